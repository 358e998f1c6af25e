//! devstack's names: services, containers, the network and the volume of a project.

use crate::api::INDEX_PATH;

/// devstack's Python services: the ones whose containers run pip. `studio` is the
/// canonical name of the service Tutor and older files call `cms`.
pub const PYTHON_SERVICES: &[&str] = &[
    "lms",
    "studio",
    "ecommerce",
    "discovery",
    "credentials",
    "edx_notes_api",
    "registrar",
    "xqueue",
    "insights",
    "analyticsapi",
    "license-manager",
    "enterprise-catalog",
    "commerce-coordinator",
    "designer",
    // Tutor's celery workers (`tutor local`), made from the same openedx image.
    "lms-worker",
    "cms-worker",
];

/// Consumers wired when none are named.
pub const DEFAULT_CONSUMERS: &[&str] = &["lms", "studio"];

/// The cache's service name, as devstack's own devpi service was called.
pub const CACHE_SERVICE: &str = "devpi";

/// The host name consumers reach the cache by (a network alias of the cache container).
pub const CACHE_HOST: &str = "edx.devstack.devpi";

/// The port the cache listens on inside the network.
pub const CACHE_PORT: u16 = 3141;

/// A devstack project (`COMPOSE_PROJECT_NAME`, `devstack` by default).
#[derive(Debug, Clone)]
pub struct Project(String);

impl Project {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'));
        if !valid {
            anyhow::bail!(
                "project name {name:?} is not one compose accepts: use lowercase letters, digits, '-' and '_' \
                 (set it with --project or COMPOSE_PROJECT_NAME)"
            );
        }
        Ok(Self(name.to_string()))
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// Whether this is a `tutor local` project (`tutor_local`, `<TUTOR_APP>_local`), as
    /// opposed to `tutor dev`'s: they start services and install requirements differently.
    pub fn is_tutor_local(&self) -> bool {
        self.0.ends_with("_local")
    }

    /// devstack's container name of a service: `edx.<project>.<service>`.
    pub fn container(&self, service: &str) -> String {
        format!("edx.{}.{service}", self.0)
    }

    pub fn network(&self) -> String {
        format!("{}_default", self.0)
    }

    pub fn volume(&self) -> String {
        format!("{}_devpi_data", self.0)
    }

    pub fn cache_container(&self) -> String {
        self.container(CACHE_SERVICE)
    }
}

/// The canonical name of the service a word names: `cms` is `studio`; any other known
/// service stands for itself. One name everywhere: the remembered state, watch,
/// status, enable, disable, logs and warm. Unknown names are refused with the list.
pub fn service(word: &str) -> anyhow::Result<String> {
    let service = match word {
        "cms" => "studio",
        other => other,
    };
    if PYTHON_SERVICES.contains(&service) {
        Ok(service.to_string())
    } else {
        anyhow::bail!(
            "unknown service {word:?}: devstack's Python services are {} (cms is studio)",
            PYTHON_SERVICES.join(", ")
        )
    }
}

/// The names a service's containers and compose labels may carry: `studio` is
/// `cms` in Tutor and in older compose files.
pub fn spellings(service: &str) -> Vec<&str> {
    if service == "studio" {
        vec!["studio", "cms"]
    } else {
        vec![service]
    }
}

/// The URL consumers use, inside the devstack network.
pub fn cache_index_url() -> String {
    format!("http://{CACHE_HOST}:{CACHE_PORT}{INDEX_PATH}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cms_is_studio_and_unknown_services_are_refused() {
        assert_eq!(service("cms").unwrap(), "studio");
        assert_eq!(service("studio").unwrap(), "studio");
        assert_eq!(service("lms").unwrap(), "lms");
        let err = service("lmss").unwrap_err().to_string();
        assert!(err.contains("lmss") && err.contains("lms, studio"), "{err}");
    }

    #[test]
    fn names_follow_devstack() {
        let project = Project::new("devstack").unwrap();
        assert_eq!(project.container("lms"), "edx.devstack.lms");
        assert_eq!(project.cache_container(), "edx.devstack.devpi");
        assert_eq!(project.network(), "devstack_default");
        assert_eq!(project.volume(), "devstack_devpi_data");
        assert!(Project::new("Dev Stack").is_err());
    }
}
