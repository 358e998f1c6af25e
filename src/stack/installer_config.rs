//! pip.conf and uv.toml as devcache writes them into a consumer: the user's own file
//! with only what points the installer at an index replaced by the cache, so their
//! other settings (`timeout`, `retries`, `cert`, `[install]` options, uv's own keys)
//! keep applying while the service is wired. The user's file itself is kept aside
//! untouched (see consumers.rs), so `disable` gives it back byte for byte.

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

/// pip's keys that choose the index or trust its host; pip spells `_` as `-`.
const PIP_INDEX_KEYS: &[&str] = &["index-url", "trusted-host"];

/// The user's pip.conf (if any) with `index-url` and `trusted-host` pointed at the
/// cache in `[global]` and removed from every other section (where they would win
/// over `[global]`); the user's other trusted hosts are kept. `header` (comment lines)
/// comes first.
pub fn pip_conf(header: &str, users: Option<&str>, index_url: &str, host: &str) -> String {
    let users = users.unwrap_or_default();
    let mut theirs_trusted = Vec::new();
    let mut kept = Vec::new();
    // Inside a dropped key's continuation lines, and whether it is trusted-host.
    let mut dropping = false;
    let mut dropping_trusted = false;
    for line in users.lines() {
        let trimmed = line.trim();
        let continuation = line.starts_with([' ', '\t']) && !trimmed.is_empty();
        if continuation && dropping {
            if dropping_trusted {
                theirs_trusted.extend(trimmed.split_whitespace().map(str::to_string));
            }
            continue;
        }
        dropping = false;
        let key_value = (!continuation && !trimmed.starts_with(['#', ';']))
            .then(|| trimmed.split_once(['=', ':']))
            .flatten();
        if let Some((key, rest)) = key_value {
            let key = key.trim().to_ascii_lowercase().replace('_', "-");
            if PIP_INDEX_KEYS.contains(&key.as_str()) {
                dropping = true;
                dropping_trusted = key == "trusted-host";
                if dropping_trusted {
                    theirs_trusted.extend(rest.split_whitespace().map(str::to_string));
                }
                continue;
            }
        }
        kept.push(line);
    }
    let mut trusted = vec![host.to_string()];
    for other in theirs_trusted {
        if !trusted.contains(&other) {
            trusted.push(other);
        }
    }
    let ours = format!(
        "index-url = {index_url}\ntrusted-host = {}\n",
        trusted.join(" ")
    );
    let mut out = header.to_string();
    let global = kept.iter().position(|l| l.trim() == "[global]");
    if global.is_none() {
        out.push_str("[global]\n");
        out.push_str(&ours);
    }
    for (i, line) in kept.iter().enumerate() {
        out.push_str(line);
        out.push('\n');
        if Some(i) == global {
            out.push_str(&ours);
        }
    }
    out
}

/// The user's uv.toml (if any) with the cache as its one default index: `index-url`
/// (top level and under `[pip]`) removed, no other `[[index]]` marked default. A file
/// that does not parse is replaced by devcache's alone (it is kept aside all the same).
/// With `system_certs` (locked installs), uv trusts the system's store, where the cache's
/// CA is.
pub fn uv_toml(header: &str, users: Option<&str>, index_url: &str, system_certs: bool) -> String {
    let mut document = users
        .and_then(|text| text.parse::<DocumentMut>().ok())
        .unwrap_or_default();
    document.remove("index-url");
    if system_certs {
        document.remove("native-tls");
        document["system-certs"] = value(true);
    }
    if let Some(pip) = document.get_mut("pip").and_then(Item::as_table_like_mut) {
        pip.remove("index-url");
    }
    let indexes = document
        .entry("index")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()));
    if let Some(indexes) = indexes.as_array_of_tables_mut() {
        for index in indexes.iter_mut() {
            index.remove("default");
        }
        let mut ours = Table::new();
        ours["url"] = value(index_url);
        ours["default"] = value(true);
        indexes.push(ours);
    }
    format!("{header}{document}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://edx.devstack.devpi:3141/root/pypi/+simple/";
    const HOST: &str = "edx.devstack.devpi";

    #[test]
    fn pip_keeps_the_users_settings_and_overrides_only_the_index() {
        let users = "[global]\ntimeout = 42\nindex-url = https://mine.example/simple/\ntrusted-host = mine.example\n    other.example\nretries = 9\n\n[install]\nindex_url = https://other.example/\nno-compile = true\n";
        let merged = pip_conf("# Written by devcache\n", Some(users), URL, HOST);
        assert_eq!(
            merged,
            format!(
                "# Written by devcache\n[global]\nindex-url = {URL}\ntrusted-host = {HOST} mine.example other.example\ntimeout = 42\nretries = 9\n\n[install]\nno-compile = true\n"
            )
        );
    }

    #[test]
    fn pip_without_a_users_file_or_global_section() {
        let alone = pip_conf("# h\n", None, URL, HOST);
        assert_eq!(
            alone,
            format!("# h\n[global]\nindex-url = {URL}\ntrusted-host = {HOST}\n")
        );
        let install_only = pip_conf("# h\n", Some("[install]\ncert = /ca.pem\n"), URL, HOST);
        assert!(
            install_only.ends_with("[install]\ncert = /ca.pem\n"),
            "{install_only}"
        );
    }

    #[test]
    fn uv_trusts_the_system_store_for_locked_installs() {
        let merged = uv_toml("# h\n", Some("native-tls = false\n"), URL, true);
        let parsed: DocumentMut = merged.parse().unwrap();
        assert_eq!(parsed["system-certs"].as_bool(), Some(true));
        assert!(parsed.get("native-tls").is_none());
    }

    #[test]
    fn uv_keeps_the_users_settings_and_makes_the_cache_the_default_index() {
        let users = "# mine\nnative-tls = true\nindex-url = \"https://mine.example/simple/\"\n\n[pip]\nindex-url = \"https://x.example/\"\ncompile-bytecode = true\n\n[[index]]\nname = \"private\"\nurl = \"https://private.example/simple/\"\ndefault = true\n";
        let merged = uv_toml("# Written by devcache\n", Some(users), URL, false);
        let parsed: DocumentMut = merged.parse().unwrap();
        assert_eq!(parsed["native-tls"].as_bool(), Some(true));
        assert!(parsed.get("index-url").is_none());
        assert_eq!(parsed["pip"]["compile-bytecode"].as_bool(), Some(true));
        assert!(parsed["pip"].get("index-url").is_none());
        let indexes = parsed["index"].as_array_of_tables().unwrap();
        assert_eq!(indexes.len(), 2);
        assert!(indexes.get(0).unwrap().get("default").is_none());
        assert_eq!(indexes.get(1).unwrap()["url"].as_str(), Some(URL));
        assert_eq!(indexes.get(1).unwrap()["default"].as_bool(), Some(true));
        assert!(
            merged.starts_with("# Written by devcache\n# mine\n"),
            "{merged}"
        );
    }
}
