//! The Seamless database: the SQLite schema of seamless-database 2.1 and the queries on it.
