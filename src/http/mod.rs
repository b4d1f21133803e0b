//! What wxgate reads and writes of HTTP itself, whatever the route: the
//! request path's normalization, the header rules (what a client may not
//! say, what wxgate injects, the client's address), and the one body type.

pub mod body;
pub mod headers;
pub mod host;
pub mod path;
pub mod request_id;
