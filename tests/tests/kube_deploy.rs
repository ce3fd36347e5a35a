//! deploy/ against a real kube-apiserver: every manifest that kustomization.yaml lists is
//! created (the server validates each), as `kubectl apply -k deploy/` would.

use herald_tests::{
    apiserver::{self, ApiServer},
    objects,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::{Api, discovery::Discovery};

#[tokio::test(flavor = "current_thread")]
async fn kustomization_applies_to_a_real_apiserver() {
    if !apiserver::available_or_skip("kustomization_applies_to_a_real_apiserver") {
        return;
    }
    let server = ApiServer::start().unwrap();
    let client = server.client().await.unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();

    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let kustomization: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(deploy.join("kustomization.yaml")).unwrap())
            .unwrap();
    let mut created = Vec::new();
    for file in kustomization["resources"].as_sequence().unwrap() {
        created.extend(
            objects::create_from_file(&client, &discovery, &deploy.join(file.as_str().unwrap())).await,
        );
    }
    for expected in [
        "CustomResourceDefinition/ipaddresspools.metallb.io",
        "Namespace/herald-system",
        "ClusterRole/herald-controller",
        "Role/herald-controller",
        "Deployment/herald-controller",
        "ClusterRole/herald-speaker",
        "Role/herald-speaker",
        "DaemonSet/herald-speaker",
    ] {
        assert!(created.iter().any(|c| c == expected), "{expected} not in {created:?}");
    }
    let speaker =
        Api::<DaemonSet>::namespaced(client.clone(), "herald-system").get("herald-speaker").await.unwrap();
    let pod = speaker.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    // The names `cargo xtask image` gives the images: the workspace's version.
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(pod.containers[0].image.as_deref(), Some(format!("herald-speaker:{version}").as_str()));
    let security = pod.containers[0].security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    let caps = security.capabilities.unwrap();
    assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
    // What the whole-cluster test runs the speaker with (tests/src/kube_lab.rs).
    assert_eq!(caps.add, Some(["BPF", "NET_ADMIN", "NET_RAW"].map(String::from).to_vec()));
    let deployment =
        Api::<Deployment>::namespaced(client, "herald-system").get("herald-controller").await.unwrap();
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let container = &spec.template.spec.unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some(format!("herald-controller:{version}").as_str()));
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
}

/// deploy/seccomp/'s patch, in an overlay of deploy/ as its comment says, rendered by the lab's
/// kubectl (kustomize v2.0): the speaker's pod runs under the shipped Localhost profile, and
/// nothing else of it changes.
#[test]
fn the_seccomp_patch_gives_the_speaker_the_shipped_profile() {
    if !apiserver::available_or_skip("the_seccomp_patch_gives_the_speaker_the_shipped_profile") {
        return;
    }
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").canonicalize().unwrap();
    let overlay = std::env::temp_dir().join(format!("herald-seccomp-overlay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&overlay);
    std::fs::create_dir_all(&overlay).unwrap();
    std::os::unix::fs::symlink(&deploy, overlay.join("deploy")).unwrap();
    std::fs::copy(deploy.join("seccomp/localhost-profile.yaml"), overlay.join("localhost-profile.yaml"))
        .unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "bases:\n- deploy\npatchesStrategicMerge:\n- localhost-profile.yaml\n",
    )
    .unwrap();
    let render = |dir: &std::path::Path| {
        let kubectl = std::path::Path::new(apiserver::BIN_DIR).join("kubectl");
        let out = std::process::Command::new(kubectl).arg("kustomize").arg(dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_slice(&out.stdout)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        docs.into_iter().find(|d| d["kind"] == "DaemonSet").expect("the speaker's DaemonSet")
    };
    let (patched, plain) = (render(&overlay), render(&deploy));
    let _ = std::fs::remove_dir_all(&overlay);
    let profile = &patched["spec"]["template"]["spec"]["securityContext"]["seccompProfile"];
    assert_eq!(profile["type"], "Localhost");
    assert_eq!(profile["localhostProfile"], "herald-speaker.json");
    assert!(deploy.join("seccomp/herald-speaker.json").is_file());
    // The rest of the pod is deploy/'s.
    let without_profile = |mut ds: serde_yaml_ng::Value| {
        ds["spec"]["template"]["spec"]["securityContext"]["seccompProfile"] = serde_yaml_ng::Value::Null;
        ds
    };
    assert_eq!(without_profile(patched), without_profile(plain));
}
