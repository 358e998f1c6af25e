//! Python packaging types: project names and simple-API pages in both formats.

pub mod html;
pub mod json;
pub mod name;
pub mod page;

pub use name::ProjectName;
pub use page::{DistFile, ProjectPage};
