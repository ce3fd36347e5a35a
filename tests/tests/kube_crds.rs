//! deploy/'s CRDs against a real kube-apiserver: the server accepts them, serves MetalLB's
//! kinds from them, and its schema validation refuses malformed objects.

use herald_kube::crd::{IPAddressPool, L2Advertisement};
use herald_tests::apiserver;
use kube::{
    Api,
    api::{DynamicObject, PostParams},
    core::GroupVersionKind,
    discovery::ApiResource,
};

#[tokio::test(flavor = "current_thread")]
async fn crds_apply_and_validate_on_a_real_apiserver() {
    if !apiserver::available_or_skip("crds_apply_and_validate_on_a_real_apiserver") {
        return;
    }
    let (_server, client) = apiserver::start_with_crds().await;

    // A pool and an advertisement as MetalLB users have them in git.
    let pool: IPAddressPool = serde_yaml_ng::from_str(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: first\nspec:\n  addresses:\n\
         \x20 - 192.0.2.0/28\n  - 198.51.100.10-198.51.100.20\n  avoidBuggyIPs: true\n  serviceAllocation:\n\
         \x20   priority: 10\n    namespaces: [default]\n",
    )
    .unwrap();
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), "default");
    pools.create(&PostParams::default(), &pool).await.unwrap();
    let back = pools.get("first").await.unwrap();
    assert_eq!(back.spec, pool.spec, "the server keeps every field");
    let advertisements: Api<L2Advertisement> = Api::namespaced(client.clone(), "default");
    let adv: L2Advertisement = serde_yaml_ng::from_str(
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: l2\nspec:\n  ipAddressPools: [first]\n",
    )
    .unwrap();
    advertisements.create(&PostParams::default(), &adv).await.unwrap();

    // The schema refuses what the types would not accept.
    let gvk = GroupVersionKind::gvk("metallb.io", "v1beta1", "IPAddressPool");
    let raw: Api<DynamicObject> = Api::namespaced_with(client, "default", &ApiResource::from_gvk(&gvk));
    let bad: DynamicObject = serde_yaml_ng::from_str(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: bad\nspec:\n  addresses: 192.0.2.0/28\n",
    )
    .unwrap();
    let err = raw.create(&PostParams::default(), &bad).await.expect_err("a string where a list belongs");
    assert!(err.to_string().contains("spec.addresses"), "{err}");
}
