"""Layer 8: web pages (storefront, analytics, operations)."""
