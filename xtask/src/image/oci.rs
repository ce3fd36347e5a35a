//! The archive of one image: an OCI image layout whose index.json names one image index (the
//! image's digest, what `image@sha256:...` and a registry's multi-arch tag point at), which lists
//! a manifest per platform; plus docker's manifest.json for the build machine's platform. Every
//! byte is a function of the files and the commit: entries sorted, owners 0, times the commit's,
//! JSON keys sorted.

use std::{collections::BTreeMap, path::Path};

use anyhow::Context as _;

use oci_spec::image::{
    ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType,
    Os, PlatformBuilder, RootFsBuilder,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::{
    Meta, Spec, reference,
    rootfs::{File, architecture},
};

/// One platform's contents: the files of its single layer (the binary first).
pub struct Platform {
    pub files: Vec<File>,
}

/// The image archive and its index's digest (`sha256:...`).
pub fn archive(spec: &Spec, meta: &Meta, platforms: &[Platform]) -> anyhow::Result<(Vec<u8>, String)> {
    let created = rfc3339(meta.time);
    let mut labels: BTreeMap<&str, String> = BTreeMap::from([
        ("org.opencontainers.image.title", spec.name.to_owned()),
        ("org.opencontainers.image.description", spec.description.to_owned()),
        ("org.opencontainers.image.version", meta.version.clone()),
        ("org.opencontainers.image.revision", meta.revision.clone()),
        ("org.opencontainers.image.created", created.clone()),
        ("org.opencontainers.image.licenses", "Apache-2.0".to_owned()),
    ]);
    if let Some(source) = &meta.source {
        labels.insert("org.opencontainers.image.source", source.clone());
    }
    let labels: std::collections::HashMap<String, String> =
        labels.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();

    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifests = Vec::new();
    // docker load (before its containerd store) reads manifest.json: one platform, the first.
    let mut docker = None;
    for platform in platforms {
        let arch = architecture(&platform.files[0].contents)?;
        let layer = layer(&platform.files, meta.time)?;
        let layer_digest = sha256(&layer);
        let config = ImageConfigurationBuilder::default()
            .created(created.clone())
            .architecture(arch.clone())
            .os(Os::Linux)
            .config(
                ConfigBuilder::default()
                    .user(spec.user)
                    .entrypoint(vec![format!("/usr/local/bin/{}", spec.name)])
                    .labels(labels.clone())
                    .build()?,
            )
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![format!("sha256:{layer_digest}")])
                    .build()?,
            )
            .build()?;
        let config = canonical(serde_json::to_value(&config))?;
        let config_digest = sha256(&config);
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(MediaType::ImageConfig, config.len() as u64, sha_digest(&config_digest)?))
            .layers(vec![Descriptor::new(
                MediaType::ImageLayer,
                layer.len() as u64,
                sha_digest(&layer_digest)?,
            )])
            .annotations(labels.clone())
            .build()?;
        let manifest = canonical(serde_json::to_value(&manifest))?;
        let manifest_digest = sha256(&manifest);
        let mut descriptor =
            Descriptor::new(MediaType::ImageManifest, manifest.len() as u64, sha_digest(&manifest_digest)?);
        descriptor.set_platform(Some(PlatformBuilder::default().architecture(arch).os(Os::Linux).build()?));
        manifests.push(descriptor);
        docker.get_or_insert_with(|| {
            serde_json::json!([{
                "Config": format!("blobs/sha256/{config_digest}"),
                "RepoTags": [format!("{}:{}", spec.name, meta.version)],
                "Layers": [format!("blobs/sha256/{layer_digest}")],
            }])
        });
        blobs.extend([(config_digest, config), (manifest_digest, manifest), (layer_digest, layer)]);
    }

    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .annotations(labels)
        .build()?;
    let index = canonical(serde_json::to_value(&index))?;
    let index_digest = sha256(&index);
    let reference = reference(spec.name, &meta.version);
    let mut descriptor =
        Descriptor::new(MediaType::ImageIndex, index.len() as u64, sha_digest(&index_digest)?);
    descriptor.set_annotations(Some(
        [
            ("org.opencontainers.image.ref.name".to_owned(), reference.clone()),
            ("io.containerd.image.name".to_owned(), reference),
        ]
        .into(),
    ));
    let layout = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![descriptor])
        .build()?;
    blobs.push((index_digest.clone(), index));

    let mut files = vec![
        ("oci-layout".to_owned(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json".to_owned(), canonical(serde_json::to_value(&layout))?),
        ("manifest.json".to_owned(), serde_json::to_vec(&docker.unwrap_or_default())?),
    ];
    files.extend(blobs.into_iter().map(|(digest, blob)| (format!("blobs/sha256/{digest}"), blob)));
    let files: Vec<File> =
        files.into_iter().map(|(path, contents)| File { path, contents, mode: 0o644 }).collect();
    Ok((layer(&files, meta.time)?, format!("sha256:{index_digest}")))
}

/// The layer of `architecture`'s image in an archive [`archive`] made.
pub fn layer_of(archive: &[u8], architecture: &str) -> anyhow::Result<Vec<u8>> {
    let mut blobs = BTreeMap::new();
    for entry in tar::Archive::new(archive).entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut contents)?;
        blobs.insert(path, contents);
    }
    let read = |path: &str| -> anyhow::Result<&Vec<u8>> {
        blobs.get(path).with_context(|| format!("no {path} in the archive"))
    };
    let blob = |digest: &Value| -> anyhow::Result<Value> {
        let digest = digest.as_str().context("a digest")?.trim_start_matches("sha256:");
        Ok(serde_json::from_slice(read(&format!("blobs/sha256/{digest}"))?)?)
    };
    let layout: Value = serde_json::from_slice(read("index.json")?)?;
    let index = blob(&layout["manifests"][0]["digest"])?;
    let manifests = index["manifests"].as_array().context("an index without manifests")?;
    let descriptor = manifests
        .iter()
        .find(|m| m["platform"]["architecture"] == architecture)
        .with_context(|| format!("no {architecture} manifest in the index"))?;
    let manifest = blob(&descriptor["digest"])?;
    let digest = manifest["layers"][0]["digest"].as_str().context("a manifest without layers")?;
    Ok(read(&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")))?.clone())
}

/// The layer: `files` with their parent directories, sorted, owned by 0, dated `time`.
pub fn layer(files: &[File], time: u64) -> anyhow::Result<Vec<u8>> {
    let mut entries: BTreeMap<String, Option<&File>> = BTreeMap::new();
    for f in files {
        let path = f.path.trim_start_matches('/');
        let mut dir = Path::new(path).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            entries.entry(format!("{}/", d.display())).or_insert(None);
            dir = d.parent();
        }
        entries.insert(path.to_owned(), Some(f));
    }
    let mut tar = tar::Builder::new(Vec::new());
    for (path, file) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(time);
        header.set_uid(0);
        header.set_gid(0);
        match file {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, &path, std::io::empty())?;
            }
            Some(f) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(f.mode);
                header.set_size(f.contents.len() as u64);
                tar.append_data(&mut header, &path, f.contents.as_slice())?;
            }
        }
    }
    Ok(tar.into_inner()?)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn sha_digest(hex: &str) -> anyhow::Result<oci_spec::image::Sha256Digest> {
    Ok(hex.parse()?)
}

/// JSON with sorted keys (oci-spec's maps are hash maps), so that the bytes are reproducible.
fn canonical(value: Result<Value, serde_json::Error>) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&value?)?)
}

/// `seconds` since 1970 as RFC 3339 UTC (civil-from-days, H. Hinnant's algorithm).
fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest / 60 % 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, contents: &[u8]) -> File {
        File { path: path.into(), contents: contents.to_vec(), mode: 0o755 }
    }

    #[test]
    fn a_layer_depends_on_its_files_only() {
        let a = [file("/usr/local/bin/x", b"x"), file("/lib64/ld.so", b"ld")];
        let b = [a[1].clone(), a[0].clone()];
        assert_eq!(layer(&a, 1_700_000_000).unwrap(), layer(&b, 1_700_000_000).unwrap());
        assert_ne!(layer(&a, 1_700_000_000).unwrap(), layer(&a, 1_700_000_001).unwrap());
        let entries: Vec<String> = tar::Archive::new(layer(&a, 0).unwrap().as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            entries,
            ["lib64/", "lib64/ld.so", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/x"]
        );
    }

    /// An ELF header's first 20 bytes for `machine` (x86-64 0x3e, aarch64 0xb7).
    fn elf(machine: u8) -> Vec<u8> {
        let mut elf = vec![0x7f, b'E', b'L', b'F'];
        elf.resize(20, 0);
        elf[18] = machine;
        elf
    }

    fn json(archive: &[u8], path: &str) -> Value {
        let mut tar = tar::Archive::new(archive);
        let mut entry = tar
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().to_string_lossy() == path)
            .unwrap_or_else(|| panic!("no {path} in the archive"));
        serde_json::from_reader(&mut entry).unwrap()
    }

    #[test]
    fn one_index_names_a_manifest_per_platform() {
        let spec = Spec { name: "herald-speaker", description: "d", user: "0", multi_arch: true };
        let meta = Meta { version: "0.1.0".into(), revision: "r".into(), time: 1_700_000_000, source: None };
        let (archive, digest) = super::archive(&spec, &meta, &two_platforms()).unwrap();
        let layout = json(&archive, "index.json");
        let named = &layout["manifests"][0];
        assert_eq!(named["mediaType"], "application/vnd.oci.image.index.v1+json");
        assert_eq!(named["digest"], digest.as_str());
        assert_eq!(
            named["annotations"]["io.containerd.image.name"],
            "docker.io/library/herald-speaker:0.1.0"
        );
        let index = json(&archive, &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")));
        let listed: Vec<String> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(listed, ["linux/amd64", "linux/arm64"]);
        let docker = json(&archive, "manifest.json");
        let config = json(&archive, docker[0]["Config"].as_str().unwrap());
        assert_eq!(config["architecture"], "amd64", "docker's manifest.json names the first platform");
        let again = super::archive(&spec, &meta, &two_platforms()).unwrap();
        assert_eq!(again.1, digest, "the same files give the same digest");
        let arm64 = layer_of(&archive, "arm64").unwrap();
        assert_eq!(arm64, layer(&two_platforms()[1].files, meta.time).unwrap());
        assert!(layer_of(&archive, "riscv64").is_err());
    }

    fn two_platforms() -> [Platform; 2] {
        [
            Platform { files: vec![file("/usr/local/bin/herald-speaker", &elf(0x3e))] },
            Platform { files: vec![file("/usr/local/bin/herald-speaker", &elf(0xb7))] },
        ]
    }

    #[test]
    fn times_in_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_470_096), "2025-11-30T02:34:56Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
