//! Interfaces Herald never announces on, by name: those container runtimes, CNI plugins and
//! Service proxies make (built in: whatever their subnet, it is not the LAN's), and those that
//! MetalLB's `metallb-excludel2` ConfigMap names with regular expressions (its file
//! `excludel2.yaml`, key `announcedInterfacesToExclude`), which MetalLB users already have.

use std::{fmt, path::Path};

use regex::Regex;
use serde::Deserialize;

/// Name prefixes of the interfaces container runtimes, CNI plugins and Service proxies make:
/// MetalLB's default `metallb-excludel2` list (less `lo`, which is never a carrier anyway), and
/// the interfaces of the CNIs and proxies it leaves out (kube-router's `kube-dummy-if`, Antrea's
/// gateway, OVN-Kubernetes'). Docker's user bridges (`br-` and 12 hex digits) are told by their
/// whole name: a LAN bridge may well be called `br-lan`.
pub const BUILT_IN: &[&str] = &[
    "veth",
    "cni",
    "cbr",
    "lxcbr",
    "flannel",
    "cali",
    "docker",
    "kube-ipvs",
    "kube-dummy-if",
    "kube-bridge",
    "antrea-",
    "ovn-k8s-",
    "cilium",
    "lxc",
    "vxlan",
    "tunl",
    "weave",
    "genev",
    "nodelocaldns",
    "tap",
    "virbr",
    "dummy",
];

/// The built-in prefixes and, if given, the ConfigMap's patterns.
#[derive(Clone, Default)]
pub struct Exclusions {
    patterns: Vec<Regex>,
}

impl fmt::Debug for Exclusions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.patterns.iter().map(Regex::as_str)).finish()
    }
}

impl PartialEq for Exclusions {
    fn eq(&self, other: &Self) -> bool {
        self.patterns.iter().map(Regex::as_str).eq(other.patterns.iter().map(Regex::as_str))
    }
}

impl Eq for Exclusions {}

/// `excludel2.yaml` as MetalLB reads it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    #[serde(default)]
    announced_interfaces_to_exclude: Vec<String>,
}

impl Exclusions {
    /// The patterns of an `excludel2.yaml`; an error names the entry that is wrong.
    pub fn parse(yaml: &str) -> Result<Self, String> {
        let file: File = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        let patterns = file
            .announced_interfaces_to_exclude
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Regex::new(p).map_err(|e| format!("announcedInterfacesToExclude[{i}] = {p:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// The patterns in `path` (MetalLB's ConfigMap, mounted); none when there is no such file.
    pub fn read(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Why the interface `name` is excluded, if it is.
    pub fn why(&self, name: &str) -> Option<String> {
        if let Some(prefix) = BUILT_IN.iter().find(|p| name.starts_with(*p)) {
            return Some(format!("is a container or proxy interface ({prefix}*)"));
        }
        if name
            .strip_prefix("br-")
            .is_some_and(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Some("is a Docker network's bridge".into());
        }
        let pattern = self.patterns.iter().find(|p| p.is_match(name))?;
        Some(format!("is excluded by metallb-excludel2 ({})", pattern.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MetalLB's own default ConfigMap.
    const METALLB_DEFAULT: &str = "announcedInterfacesToExclude: [\"^docker.*\", \"^cbr.*\", \
        \"^dummy.*\", \"^virbr.*\", \"^lxcbr.*\", \"^veth.*\", \"^lo$\", \"^cali.*\", \"^tunl.*\", \
        \"^flannel.*\", \"^kube-ipvs.*\", \"^cni.*\", \"^nodelocaldns.*\"]\n";

    #[test]
    fn built_in_prefixes_and_the_configmaps_patterns() {
        let none = Exclusions::default();
        assert_eq!(none.why("kube-ipvs0").unwrap(), "is a container or proxy interface (kube-ipvs*)");
        assert!(none.why("kube-dummy-if").is_some());
        assert_eq!(none.why("br-0c1d2e3f4a5b").unwrap(), "is a Docker network's bridge");
        assert_eq!(none.why("br-lan"), None, "a LAN bridge");
        assert_eq!(none.why("eth0"), None);
        assert_eq!(none.why("bond0.42"), None);
        let metallb = Exclusions::parse(METALLB_DEFAULT).unwrap();
        assert_eq!(metallb.why("lo").unwrap(), "is excluded by metallb-excludel2 (^lo$)");
        assert_eq!(none.why("lo"), None);
        assert_eq!(metallb.why("eth0"), None);
        let mine = Exclusions::parse("announcedInterfacesToExclude:\n- ^storage[0-9]$\n").unwrap();
        assert_eq!(mine.why("storage1").unwrap(), "is excluded by metallb-excludel2 (^storage[0-9]$)");
        assert_eq!(mine.why("storage10"), None);
    }

    #[test]
    fn a_bad_file_names_what_is_wrong() {
        assert_eq!(
            Exclusions::parse("announcedInterfacesToExclude: [\"^ok$\", \"^(bad\"]\n")
                .unwrap_err()
                .lines()
                .next(),
            Some("announcedInterfacesToExclude[1] = \"^(bad\": regex parse error:")
        );
        assert!(
            Exclusions::parse("excludeThese: [a]\n").unwrap_err().contains("unknown field `excludeThese`")
        );
        let missing = Exclusions::read(Path::new("/nonexistent/excludel2.yaml")).unwrap();
        assert_eq!(missing, Exclusions::default());
    }
}
