//! `provider::batchai::parse_id(id)`: the parts of any ID this provider issues, through the
//! same parsers the resources use for import and references.
use tfplug::{Function, FunctionError, Parameter, Signature, Type, Value};

use super::{object, string_or_null};
use crate::resources::{PLATFORMS, cluster, file_server, job};

/// The `parse_id` function.
#[derive(Debug)]
pub struct ParseId;

/// What an ID names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedId {
    pub platform: String,
    /// `cluster`, `job` or `file_server`.
    pub kind: &'static str,
    pub cluster_name: Option<String>,
    pub job_name: Option<String>,
    pub file_server_name: Option<String>,
}

const FORMS: &str = "IDs look like \"<platform>/clusters/<cluster>\", \
     \"<platform>/clusters/<cluster>/jobs/<job>\" or \"<platform>/fileServers/<name>\", \
     where the platform is local or azure";

/// Parses an ID of a cluster, a job or a file server, of either platform.
pub fn parse(id: &str) -> Result<ParsedId, String> {
    let not_ours = || format!("{id:?} is not an ID this provider issues; {FORMS}");
    let (platform, rest) = id
        .split_once('/')
        .filter(|(p, _)| PLATFORMS.contains(p))
        .ok_or_else(not_ours)?;
    let parsed =
        |kind, cluster: Option<&str>, job: Option<&str>, file_server: Option<&str>| ParsedId {
            platform: platform.to_owned(),
            kind,
            cluster_name: cluster.map(str::to_owned),
            job_name: job.map(str::to_owned),
            file_server_name: file_server.map(str::to_owned),
        };
    if rest.starts_with("clusters/") && rest.contains("/jobs/") {
        return match job::parse_id(id) {
            Ok((cluster, job)) => Ok(parsed(
                "job",
                Some(cluster.as_str()),
                Some(job.as_str()),
                None,
            )),
            Err(job::JobIdError::JobName(e)) => Err(format!("{id:?} is not a valid job ID: {e}")),
            Err(job::JobIdError::Malformed(_)) => Err(not_ours()),
        };
    }
    if rest.starts_with("clusters/") {
        return match cluster::parse_id(id) {
            Ok(name) => Ok(parsed("cluster", Some(name.as_str()), None, None)),
            Err(cluster::ClusterIdError::Name(e)) => {
                Err(format!("{id:?} is not a valid cluster ID: {e}"))
            }
            Err(cluster::ClusterIdError::NotAClusterId { .. }) => Err(not_ours()),
        };
    }
    if rest.starts_with("fileServers/") {
        return match file_server::parse_id(id) {
            Ok(name) => Ok(parsed("file_server", None, None, Some(name.as_str()))),
            Err(file_server::IdError::Name(e)) => {
                Err(format!("{id:?} is not a valid file server ID: {e}"))
            }
            Err(file_server::IdError::Prefix { .. }) => Err(not_ours()),
        };
    }
    Err(not_ours())
}

fn return_type() -> Type {
    Type::object([
        ("platform", Type::String),
        ("kind", Type::String),
        ("cluster_name", Type::String),
        ("job_name", Type::String),
        ("file_server_name", Type::String),
    ])
}

impl Function for ParseId {
    fn name(&self) -> &'static str {
        "parse_id"
    }

    fn signature(&self) -> Signature {
        Signature::new(
            "Splits a cluster, job or file server ID of this provider into its parts.",
            vec![Parameter::new(
                "id",
                Type::String,
                "An ID this provider issues: `<platform>/clusters/<cluster>`, \
                 `<platform>/clusters/<cluster>/jobs/<job>` or `<platform>/fileServers/<name>`, \
                 where the platform is `local` or `azure`.",
            )],
            return_type(),
        )
        .description(
            "Splits an ID of a `batchai_cluster`, `batchai_job` or `batchai_file_server` (its \
             `id` attribute, or an ID written for `terraform import`) into an object with \
             `platform` (`local` or `azure`), `kind` (`cluster`, `job` or `file_server`), \
             `cluster_name`, `job_name` and `file_server_name`; the names that do not apply \
             to the kind are null. An ID in any other form is an error that lists the forms \
             accepted. The function reads nothing: it does not check that the resource exists.",
        )
        .example(
            "output \"cluster_of_job\" {\n  \
             # \"gpu\"\n  \
             value = provider::batchai::parse_id(\"local/clusters/gpu/jobs/train\").cluster_name\n\
             }\n\n\
             locals {\n  \
             # { platform = \"azure\", kind = \"file_server\", cluster_name = null,\n  \
             #   job_name = null, file_server_name = \"data\" }\n  \
             data_server = provider::batchai::parse_id(\"azure/fileServers/data\")\n\
             }",
        )
    }

    fn call(&self, arguments: &[Value]) -> Result<Value, FunctionError> {
        let id = arguments
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default();
        let parsed = parse(id).map_err(|e| FunctionError::argument(0, e))?;
        Ok(object([
            ("platform", Value::string(parsed.platform)),
            ("kind", Value::string(parsed.kind)),
            (
                "cluster_name",
                string_or_null(parsed.cluster_name.as_deref()),
            ),
            ("job_name", string_or_null(parsed.job_name.as_deref())),
            (
                "file_server_name",
                string_or_null(parsed.file_server_name.as_deref()),
            ),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_every_kind_and_platform() {
        let cases = [
            (
                "local/clusters/gpu",
                "local",
                "cluster",
                Some("gpu"),
                None,
                None,
            ),
            (
                "azure/clusters/gpu-2",
                "azure",
                "cluster",
                Some("gpu-2"),
                None,
                None,
            ),
            (
                "local/clusters/gpu/jobs/train_1",
                "local",
                "job",
                Some("gpu"),
                Some("train_1"),
                None,
            ),
            (
                "azure/clusters/c/jobs/j",
                "azure",
                "job",
                Some("c"),
                Some("j"),
                None,
            ),
            (
                "local/fileServers/data",
                "local",
                "file_server",
                None,
                None,
                Some("data"),
            ),
        ];
        for (id, platform, kind, cluster, job, file_server) in cases {
            let parsed = parse(id).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(parsed.platform, platform, "{id}");
            assert_eq!(parsed.kind, kind, "{id}");
            assert_eq!(parsed.cluster_name.as_deref(), cluster, "{id}");
            assert_eq!(parsed.job_name.as_deref(), job, "{id}");
            assert_eq!(parsed.file_server_name.as_deref(), file_server, "{id}");
        }
    }

    #[test]
    fn malformed_ids_say_which_forms_are_accepted() {
        let cases = [
            ("", "is not an ID this provider issues"),
            ("gpu", "is not an ID this provider issues"),
            ("aws/clusters/gpu", "is not an ID this provider issues"),
            ("local/clusters", "is not an ID this provider issues"),
            (
                "local/fileservers/data",
                "is not an ID this provider issues",
            ),
            (
                "local/clusters/gpu/jobs",
                "is not a valid cluster ID: \"gpu/jobs\" contains '/'",
            ),
            (
                "local/clusters/bad name",
                "is not a valid cluster ID: \"bad name\" contains ' '",
            ),
            ("local/clusters/gpu/jobs/a/b", "is not a valid job ID"),
            (
                "local/clusters/a/b/jobs/c",
                "is not an ID this provider issues",
            ),
            (
                "azure/fileServers/",
                "is not a valid file server ID: \"\" has 0 characters",
            ),
        ];
        for (id, want) in cases {
            let err = parse(id).err().unwrap_or_default();
            assert!(err.contains(want), "{id:?}: {err}");
            if want.contains("issues") {
                assert!(err.contains("\"<platform>/fileServers/<name>\""), "{err}");
            }
        }
    }

    #[test]
    fn the_call_returns_an_object_of_the_declared_type_or_an_error_on_argument_0() {
        let value = ParseId
            .call(&[Value::string("local/clusters/gpu/jobs/train")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(value.conforms_to(&return_type()), Ok(()));
        assert_eq!(value.get_attr("kind").and_then(Value::as_str), Some("job"));
        assert_eq!(value.get_attr("file_server_name"), Some(&Value::Null));
        let err = ParseId.call(&[Value::string("nope")]).err();
        assert_eq!(err.and_then(|e| e.argument), Some(0));
    }
}
