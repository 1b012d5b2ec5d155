//! `sftpctl report` over the whole history: every rotated log as one stream (`logs`; read and
//! parsed on threads of their own by `stream`), the filters (`filter`, with their time values
//! in `when`) and the CSV output (`csv`).

pub mod csv;
pub mod filter;
pub mod logins;
pub mod logs;
pub mod stream;
pub mod when;
