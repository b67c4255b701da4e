//! A real Kubernetes control plane and a local kubelet, for the controller
//! suites and `scripts/dev-cluster`.

pub mod backup_run;
pub mod certs;
pub mod cluster;
pub mod control_plane;
pub mod istio;
pub mod kubelet;
pub mod metrics_api;

pub use backup_run::BackupUnderTest;
pub use cluster::{Controller, TestCluster};
pub use control_plane::ControlPlane;
pub use kubelet::{KubeletConfig, LocalKubelet};
pub use metrics_api::MetricsApi;
