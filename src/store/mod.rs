//! The on-disk buffer directory (`buffers/<first 2 hex>/<hex>`), written atomically, read through
//! memory maps.
