//! How an Azure VM becomes a node: the custom data of a scale set's VM profile, a
//! `#cloud-config` document that uses only `write_files` and `runcmd` (the subset the ARM
//! simulator runs too). It writes the node's configuration and a shell script; the script gets
//! a token from the VM's managed identity, downloads this binary from the control container,
//! checks its SHA-256 and runs it as `agent azure`. Custom data carries no secret: everything
//! in it is readable by anyone who can read the scale set.
//!
//! Every path the script uses is under `${BATCHAI_ROOTFS}` (unset on a real VM, meaning `/`), so
//! the simulator can boot many "VMs" in directories of their own on one machine.
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Where the node's configuration is written on the VM (under `BATCHAI_ROOTFS`).
pub const CONFIG_PATH: &str = "/etc/batchai/node.json";
/// Where the test CA is written when the provider was told to trust one.
pub const TEST_CA_PATH: &str = "/etc/batchai/test-ca.pem";
/// The bootstrap script.
pub const SCRIPT_PATH: &str = "/usr/local/lib/batchai/bootstrap.sh";
/// Azure's limit on decoded custom data.
pub const MAX_CUSTOM_DATA: usize = 65_535;
/// The storage API version the script's download asks for (as the blob store does).
const STORAGE_API: &str = control_blob::API_VERSION;

/// What a node needs to know to start: all of it public.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// The control container's URL.
    pub store_url: String,
    pub cluster: String,
    /// The client ID of the user-assigned identity the node authenticates with.
    pub identity_client_id: String,
    /// The agent binary's blob URL and SHA-256 (hex).
    pub agent_url: String,
    pub agent_sha256: String,
    /// Resource Manager and the scope of its tokens, for a node that schedules (it grows and
    /// shrinks its scale set, which is named after the cluster).
    pub resource_manager: String,
    pub arm_scope: String,
    pub subscription_id: String,
    pub resource_group: String,
    /// The node's work directory (mounts, job directories, logs).
    pub work_dir: String,
}

/// The custom data for nodes with `config`: base64 of the cloud-config document.
/// `test_ca_pem` is the test-only CA the provider trusts (`BATCHAI_TEST_CA_CERTIFICATE`), passed
/// on so that nodes trust the simulator's storage too.
pub fn custom_data(config: &NodeConfig, test_ca_pem: Option<&str>) -> Result<String, String> {
    encode("node bootstrap", &cloud_config(config, test_ca_pem)?)
}

/// The cloud-config document itself.
pub fn cloud_config(config: &NodeConfig, test_ca_pem: Option<&str>) -> Result<String, String> {
    let json = serde_json::to_string_pretty(config).map_err(|e| e.to_string())?;
    let mut files = vec![(CONFIG_PATH, "0644", json)];
    if let Some(pem) = test_ca_pem {
        files.push((TEST_CA_PATH, "0644", pem.to_owned()));
    }
    files.push((SCRIPT_PATH, "0755", script(config)));
    Ok(document("node bootstrap", &files, SCRIPT_PATH))
}

/// A cloud-config document that writes `files` (path, permissions, content) and runs the
/// script at `run`, which is one of them.
pub(super) fn document(what: &str, files: &[(&str, &str, String)], run: &str) -> String {
    let mut out = format!("#cloud-config\n# terraform-provider-batchai {what}\nwrite_files:\n");
    for (path, permissions, content) in files {
        let encoded = base64::engine::general_purpose::STANDARD.encode(content);
        out.push_str(&format!(
            "  - path: {path}\n    permissions: '{permissions}'\n    encoding: b64\n    content: {encoded}\n"
        ));
    }
    // `sh -c` expands BATCHAI_ROOTFS: empty on a real VM, the VM's directory in the simulator.
    out.push_str(&format!(
        "runcmd:\n  - [sh, -c, 'exec sh \"${{BATCHAI_ROOTFS:-}}{run}\"']\n"
    ));
    out
}

/// Base64 of `document`, refused when it is larger than Azure takes.
pub(super) fn encode(what: &str, document: &str) -> Result<String, String> {
    if document.len() > MAX_CUSTOM_DATA {
        return Err(format!(
            "the {what} is {} bytes, more than Azure's {MAX_CUSTOM_DATA} for custom data",
            document.len()
        ));
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(document))
}

/// Quotes `value` for a POSIX shell.
pub(super) fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The bootstrap script: fetch the agent with a managed identity token, check it, run it (as a
/// systemd service on a real VM, so that it comes back after a crash or a reboot).
fn script(config: &NodeConfig) -> String {
    format!(
        r#"#!/bin/sh
# terraform-provider-batchai node bootstrap: fetches the node agent from the control container
# with this VM's managed identity, checks its SHA-256 and starts it.
set -eu
R="${{BATCHAI_ROOTFS:-}}"
IMDS="${{BATCHAI_IMDS_ENDPOINT:-http://169.254.169.254}}"
CLIENT_ID={client_id}
AGENT_URL={agent_url}
AGENT_SHA256={sha}
AGENT="$R/var/lib/batchai/terraform-provider-batchai"
LOG="$R/var/log/batchai-bootstrap.log"
mkdir -p "$R/var/lib/batchai" "$R/var/log"
CA=""
if [ -f "$R{test_ca}" ]; then CA="--cacert $R{test_ca}"; fi

say() {{ echo "batchai bootstrap: $*" | tee -a "$LOG" >&2; }}

# IMDS and the identity may need a moment after boot: try for up to 10 minutes.
token() {{
  tries=0
  while [ $tries -lt "${{BATCHAI_BOOTSTRAP_TOKEN_TRIES:-120}}" ]; do
    answer=$(curl -sS -m 10 -H Metadata:true "$IMDS/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fstorage.azure.com%2F&client_id=$CLIENT_ID" 2>>"$LOG") || answer=""
    t=$(printf '%s' "$answer" | sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p')
    if [ -n "$t" ]; then printf '%s' "$t"; return 0; fi
    tries=$((tries + 1))
    sleep "${{BATCHAI_BOOTSTRAP_PAUSE:-5}}"
  done
  say "no managed identity token for $CLIENT_ID from $IMDS after 10 minutes"
  return 1
}}

if [ ! -x "$AGENT" ] || ! echo "$AGENT_SHA256  $AGENT" | sha256sum -c - >/dev/null 2>&1; then
  tries=0
  most="${{BATCHAI_BOOTSTRAP_TRIES:-10}}"
  until
    TOKEN=$(token) &&
    curl -sS -f -m 300 $CA -H "Authorization: Bearer $TOKEN" -H "x-ms-version: {api}" -o "$AGENT.partial" "$AGENT_URL" 2>>"$LOG" &&
    echo "$AGENT_SHA256  $AGENT.partial" | sha256sum -c - >>"$LOG" 2>&1
  do
    tries=$((tries + 1))
    if [ $tries -ge "$most" ]; then say "could not download a good agent from $AGENT_URL"; exit 1; fi
    say "download of the agent failed (attempt $tries); trying again"
    sleep "${{BATCHAI_BOOTSTRAP_PAUSE:-10}}"
  done
  chmod 0755 "$AGENT.partial"
  mv "$AGENT.partial" "$AGENT"
fi
say "agent $AGENT_SHA256 ready"

if [ -z "$R" ] && command -v systemctl >/dev/null 2>&1; then
  cat >/etc/systemd/system/batchai-agent.service <<UNIT
[Unit]
Description=terraform-provider-batchai node agent
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=$AGENT agent azure --config {config}
Restart=always
RestartSec=5
KillMode=mixed
TimeoutStopSec=120

[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable --now batchai-agent.service
else
  # No systemd (the simulator): the agent runs in the background, in the VM's process group.
  nohup "$AGENT" agent azure --config "$R{config}" >>"$R/var/log/batchai-agent.log" 2>&1 &
fi
"#,
        client_id = quote(&config.identity_client_id),
        agent_url = quote(&config.agent_url),
        sha = quote(&config.agent_sha256),
        test_ca = TEST_CA_PATH,
        config = CONFIG_PATH,
        api = STORAGE_API,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config() -> NodeConfig {
        NodeConfig {
            store_url: "https://mlctrl.blob.core.windows.net/batchai".into(),
            cluster: "gpu".into(),
            identity_client_id: "1b2c".into(),
            agent_url: "https://mlctrl.blob.core.windows.net/batchai/agent/0.1.0/ab12".into(),
            agent_sha256: "ab12".into(),
            resource_manager: "https://management.azure.com/".into(),
            arm_scope: "https://management.azure.com/.default".into(),
            subscription_id: "s".into(),
            resource_group: "r".into(),
            work_dir: "/mnt/batchai".into(),
        }
    }

    /// The `content` of the `write_files` entry for `path`, decoded.
    fn file(document: &str, path: &str) -> Option<String> {
        let at = document.find(&format!("- path: {path}\n"))?;
        let rest = &document[at..];
        let line = rest
            .lines()
            .find(|l| l.trim_start().starts_with("content: "))?;
        let encoded = line.trim_start().trim_start_matches("content: ");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        String::from_utf8(bytes).ok()
    }

    #[test]
    fn the_document_writes_the_config_and_the_script_and_runs_it() {
        let document = cloud_config(&config(), None).unwrap();
        assert!(document.starts_with("#cloud-config\n"));
        let written: NodeConfig =
            serde_json::from_str(&file(&document, CONFIG_PATH).unwrap()).unwrap();
        assert_eq!(written, config());
        let script = file(&document, SCRIPT_PATH).unwrap();
        assert!(script.contains("CLIENT_ID='1b2c'"), "{script}");
        assert!(script.contains("sha256sum -c"), "{script}");
        assert!(file(&document, TEST_CA_PATH).is_none());
        assert!(document.contains(&format!(
            "runcmd:\n  - [sh, -c, 'exec sh \"${{BATCHAI_ROOTFS:-}}{SCRIPT_PATH}\"']\n"
        )));
        // Only the keys the simulator (and this bootstrap) rely on.
        for line in document
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('#'))
        {
            assert!(["write_files:", "runcmd:"].contains(&line), "{line}");
        }
    }

    #[test]
    fn a_test_ca_travels_with_the_nodes() {
        let document = cloud_config(&config(), Some("-----BEGIN CERTIFICATE-----\nx\n")).unwrap();
        assert_eq!(
            file(&document, TEST_CA_PATH).unwrap(),
            "-----BEGIN CERTIFICATE-----\nx\n"
        );
    }

    #[test]
    fn values_are_quoted_for_the_shell() {
        let mut c = config();
        c.identity_client_id = "a'b; rm -rf /".into();
        let script = file(&cloud_config(&c, None).unwrap(), SCRIPT_PATH).unwrap();
        assert!(script.contains(r"CLIENT_ID='a'\''b; rm -rf /'"), "{script}");
    }

    #[test]
    fn custom_data_is_base64_of_the_document_and_bounded() {
        let data = custom_data(&config(), None).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            cloud_config(&config(), None).unwrap()
        );
        let huge = "x".repeat(MAX_CUSTOM_DATA);
        let error = custom_data(&config(), Some(&huge)).unwrap_err();
        assert!(error.contains("more than Azure's 65535"), "{error}");
    }

    /// A fake VM: IMDS and the control container on one plain-HTTP listener. IMDS hands out
    /// `token`; the blob download needs it as a bearer token and serves `agent`.
    fn fake_vm(agent: Vec<u8>) -> String {
        use std::io::{BufRead as _, BufReader, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let mut line = String::new();
                // Header names and values as `name:value`, lowercase: curl sends what it is given.
                while reader.read_line(&mut line).unwrap() > 2 {
                    request.push_str(&line.to_ascii_lowercase().replacen(": ", ":", 1));
                    line.clear();
                }
                let (status, body) = if request.starts_with("get /metadata/identity/oauth2/token?")
                    && request.contains("metadata:true")
                    && request.contains("client_id=1b2c")
                {
                    (
                        "200 OK",
                        br#"{"access_token":"tok-123","expires_on":"9999999999"}"#.to_vec(),
                    )
                } else if request.starts_with("get /agent ")
                    && request.contains("authorization:bearer tok-123")
                {
                    ("200 OK", agent.clone())
                } else {
                    ("403 Forbidden", b"no".to_vec())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        address
    }

    /// Runs the bootstrap of `config` in a directory, as the simulator does; returns the
    /// directory and whether the script succeeded.
    fn boot(config: &NodeConfig, imds: &str) -> (tempfile::TempDir, std::process::Output) {
        let root = tempfile::tempdir().unwrap();
        let script = file(&cloud_config(config, None).unwrap(), SCRIPT_PATH).unwrap();
        let config_json = file(&cloud_config(config, None).unwrap(), CONFIG_PATH).unwrap();
        for (path, content) in [(SCRIPT_PATH, script), (CONFIG_PATH, config_json)] {
            let at = root.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::fs::write(at, content).unwrap();
        }
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec sh \"${{BATCHAI_ROOTFS:-}}{SCRIPT_PATH}\""))
            .env("BATCHAI_ROOTFS", root.path())
            .env("BATCHAI_IMDS_ENDPOINT", imds)
            .env("BATCHAI_BOOTSTRAP_TRIES", "2")
            .env("BATCHAI_BOOTSTRAP_TOKEN_TRIES", "2")
            .env("BATCHAI_BOOTSTRAP_PAUSE", "0")
            .output()
            .unwrap();
        (root, output)
    }

    #[test]
    fn the_script_fetches_the_agent_with_the_identity_checks_it_and_starts_it() {
        let agent = b"#!/bin/sh\necho \"$@\" > \"$BATCHAI_ROOTFS/started\"\n".to_vec();
        let sha = {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &agent);
            digest
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let address = fake_vm(agent);
        let mut c = config();
        c.agent_url = format!("{address}/agent");
        c.agent_sha256 = sha;
        let (root, output) = boot(&c, &address);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let started = root.path().join("started");
        // The agent runs in the background: give it a moment to write.
        for _ in 0..100 {
            if started.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let args = std::fs::read_to_string(&started).unwrap();
        assert_eq!(
            args.trim(),
            format!(
                "agent azure --config {}{CONFIG_PATH}",
                root.path().display()
            )
        );

        // A binary that does not match its SHA-256 is never run.
        let mut bad = c.clone();
        bad.agent_sha256 = "0".repeat(64);
        let (root, output) = boot(&bad, &address);
        assert!(!output.status.success());
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("could not download a good agent"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !root
                .path()
                .join("var/lib/batchai/terraform-provider-batchai")
                .exists()
        );
    }

    #[test]
    fn the_script_is_valid_posix_shell() {
        let script = file(&cloud_config(&config(), None).unwrap(), SCRIPT_PATH).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap.sh");
        std::fs::write(&path, script).unwrap();
        let checked = std::process::Command::new("sh")
            .arg("-n")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
}
