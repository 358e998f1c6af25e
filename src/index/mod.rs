//! Python packaging types: project names, simple-API pages in both formats,
//! and wheels' core metadata.

pub mod hashes;
pub mod html;
pub mod json;
pub mod name;
pub mod page;
pub mod wheel;

pub use name::ProjectName;
pub use page::{DistFile, ProjectPage};
