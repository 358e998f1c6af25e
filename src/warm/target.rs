//! The interpreter and platforms a cache is warmed for: the wheel tags they accept
//! (as the packaging spec's tag order defines them) and their environment markers.

use std::collections::HashSet;

use anyhow::{Result, bail};
use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder};

/// Who will install from the cache.
#[derive(Debug)]
pub struct Target {
    pub python: (u32, u32),
    pub platforms: Vec<String>,
    pub markers: MarkerEnvironment,
    tags: HashSet<String>,
}

/// The platform assumed when none is given: devstack's images are glibc 2.35 on this
/// machine's architecture.
pub fn default_platform() -> String {
    format!("manylinux_2_35_{}", std::env::consts::ARCH)
}

impl Target {
    /// `python` is `3.11` or `3.11.7`; `platforms` are wheel platform tags such as
    /// `manylinux_2_28_x86_64` (older manylinux and `linux_*` follow from them).
    pub fn new(python: &str, platforms: &[String]) -> Result<Self> {
        let parts: Vec<u32> = python
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| anyhow::anyhow!("--python {python:?} is not a version like 3.11"))?;
        let (major, minor) = match parts[..] {
            [3, minor] | [3, minor, _] => (3, minor),
            _ => bail!("--python {python:?}: give a Python 3 version like 3.11"),
        };
        let full = match parts[..] {
            [_, _, patch] => format!("3.{minor}.{patch}"),
            _ => format!("3.{minor}.0"),
        };
        let platforms = if platforms.is_empty() {
            vec![default_platform()]
        } else {
            platforms.to_vec()
        };
        let expanded: Vec<String> = platforms.iter().flat_map(|p| expand_platform(p)).collect();
        let machine = platforms
            .iter()
            .find_map(|p| {
                ["x86_64", "aarch64", "i686", "ppc64le", "s390x", "armv7l"]
                    .into_iter()
                    .find(|a| p.ends_with(a))
            })
            .unwrap_or(std::env::consts::ARCH);
        let markers = MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
            implementation_name: "cpython",
            implementation_version: &full,
            os_name: "posix",
            platform_machine: machine,
            platform_python_implementation: "CPython",
            platform_release: "",
            platform_system: "Linux",
            platform_version: "",
            python_full_version: &full,
            python_version: &format!("3.{minor}"),
            sys_platform: "linux",
        })?;
        Ok(Self {
            python: (major, minor),
            tags: supported_tags(minor, &expanded),
            platforms,
            markers,
        })
    }

    /// Whether a wheel file name carries a tag this target installs.
    pub fn accepts_wheel(&self, filename: &str) -> bool {
        let Some(stem) = filename.strip_suffix(".whl") else {
            return false;
        };
        let fields: Vec<&str> = stem.split('-').collect();
        if fields.len() < 5 {
            return false;
        }
        let [python, abi, platform] = [
            fields[fields.len() - 3],
            fields[fields.len() - 2],
            fields[fields.len() - 1],
        ];
        // Compressed tag sets (`py2.py3-none-any`) stand for every combination.
        python.split('.').any(|py| {
            abi.split('.').any(|abi| {
                platform
                    .split('.')
                    .any(|plat| self.tags.contains(&format!("{py}-{abi}-{plat}")))
            })
        })
    }
}

/// A platform and the older ones it can run: manylinux_2_28 runs manylinux_2_17
/// (alias manylinux2014) and so on down, and every linux wheel of the architecture.
fn expand_platform(platform: &str) -> Vec<String> {
    let mut out = vec![platform.to_string()];
    if let Some(rest) = platform.strip_prefix("manylinux_")
        && let Some((major, rest)) = rest.split_once('_')
        && let Some((minor, arch)) = rest.split_once('_')
        && let (Ok(2), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>())
    {
        for older in (5..=minor).rev() {
            out.push(format!("manylinux_2_{older}_{arch}"));
            match older {
                17 => out.push(format!("manylinux2014_{arch}")),
                12 => out.push(format!("manylinux2010_{arch}")),
                5 => out.push(format!("manylinux1_{arch}")),
                _ => {}
            }
        }
        out.push(format!("linux_{arch}"));
    } else if let Some(rest) = platform.strip_prefix("musllinux_1_")
        && let Some((minor, arch)) = rest.split_once('_')
        && let Ok(minor) = minor.parse::<u32>()
    {
        for older in (0..=minor).rev() {
            out.push(format!("musllinux_1_{older}_{arch}"));
        }
        out.push(format!("linux_{arch}"));
    }
    out.dedup();
    out
}

/// The tags CPython 3.`minor` installs on `platforms` (packaging's `sys_tags`).
fn supported_tags(minor: u32, platforms: &[String]) -> HashSet<String> {
    let cp = format!("cp3{minor}");
    let mut tags = HashSet::new();
    for platform in platforms {
        tags.insert(format!("{cp}-{cp}-{platform}"));
        tags.insert(format!("{cp}-none-{platform}"));
        for older in (2..=minor).rev() {
            tags.insert(format!("cp3{older}-abi3-{platform}"));
        }
        tags.insert(format!("py3{minor}-none-{platform}"));
        tags.insert(format!("py3-none-{platform}"));
        for older in 0..minor {
            tags.insert(format!("py3{older}-none-{platform}"));
        }
    }
    tags.insert(format!("{cp}-none-any"));
    tags.insert(format!("py3{minor}-none-any"));
    tags.insert("py3-none-any".to_string());
    for older in 0..minor {
        tags.insert(format!("py3{older}-none-any"));
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_pip_would_install() {
        let target = Target::new("3.11", &["manylinux_2_28_x86_64".to_string()]).unwrap();
        for wheel in [
            "six-1.16.0-py2.py3-none-any.whl",
            "lxml-5.0-cp311-cp311-manylinux_2_28_x86_64.whl",
            "lxml-5.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "cryptography-42-cp37-abi3-manylinux2014_x86_64.whl",
            "numpy-1.26-1-cp311-cp311-manylinux1_x86_64.whl",
            "thing-1.0-py310-none-any.whl",
        ] {
            assert!(target.accepts_wheel(wheel), "{wheel}");
        }
        for wheel in [
            "lxml-5.0-cp312-cp312-manylinux_2_28_x86_64.whl",
            "lxml-5.0-cp311-cp311-manylinux_2_31_x86_64.whl",
            "lxml-5.0-cp311-cp311-win_amd64.whl",
            "lxml-5.0-cp311-cp311-manylinux_2_28_aarch64.whl",
            "old-1.0-py2-none-any.whl",
            "x-1.0.tar.gz",
        ] {
            assert!(!target.accepts_wheel(wheel), "{wheel}");
        }
    }

    #[test]
    fn bad_versions_are_refused_with_the_flag_named() {
        assert!(
            Target::new("three", &[])
                .unwrap_err()
                .to_string()
                .contains("--python")
        );
        assert!(Target::new("2.7", &[]).is_err());
        assert_eq!(Target::new("3.12.1", &[]).unwrap().python, (3, 12));
    }
}
