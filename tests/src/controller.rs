//! herald-controller as a process against a test API server, for the controller suites.

use crate::{apiserver::ApiServer, workspace_bin};

/// Where its IPAddressPools and its leader Lease live.
pub const POOLS: &str = "metallb-system";

/// The controller binary, running against `server` until dropped; `port` serves its telemetry.
pub struct Controller(std::process::Child, u16);

impl Controller {
    pub fn start(server: &ApiServer) -> Self {
        Self::start_as(server, "herald-controller-0")
    }

    /// A replica called `name`, with a 3 s leader Lease.
    pub fn start_as(server: &ApiServer, name: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(workspace_bin("herald-controller"))
            .args(["--lease-seconds", "3", "--telemetry", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", &server.kubeconfig)
            .env("POD_NAMESPACE", POOLS)
            .env("POD_NAME", name)
            .spawn()
            .expect("herald-controller");
        Self(child, port)
    }

    /// GET `path` on its telemetry endpoint: (HTTP status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let out = std::process::Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", &format!("http://127.0.0.1:{}{path}", self.1)])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
