//! vertice-controller: reconciles VerticeBackup, VerticeScaler and
//! VerticeFailover resources. The reconcilers arrive with their own issues;
//! until then the binary refuses to run rather than pretend to.

fn main() {
    eprintln!(
        "vertice-controller {}: no reconcilers are built into this version yet; deploy vertice-agent CronJobs directly",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
