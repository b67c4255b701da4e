use vertice_tests::kube::ControlPlane;
#[tokio::test(flavor = "multi_thread")]
async fn smoke() {
    let plane = ControlPlane::start().await;
    let c = plane.admin_client().await;
    let v = c.apiserver_version().await.unwrap();
    eprintln!("{v:?}");
    plane.create_namespace("x").await;
    let out = plane.kubectl().args(["get", "ns,sa", "-A"]).output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
}
