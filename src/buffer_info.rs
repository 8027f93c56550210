//! BufferInfo: the facts known about a buffer (length, is_json, dtype, conversion partners …),
//! in the shape of the seamless-database `buffer_info` record.
