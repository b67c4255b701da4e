//! A real Kubernetes control plane and a local kubelet, for the controller
//! suites and `scripts/dev-cluster`.

pub mod certs;
pub mod control_plane;
pub mod kubelet;

pub use control_plane::ControlPlane;
pub use kubelet::{KubeletConfig, LocalKubelet};
