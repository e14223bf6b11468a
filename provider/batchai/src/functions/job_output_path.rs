//! `provider::batchai::job_output_path(job, output_id)`: the path of one of a job's output
//! directories, laid out by `control::jobs::OutputDirectory::job_path`, the code the nodes
//! create the directory with.
//!
//! The path contains the job's unique segment (`<cluster>/jobs/<job>/<uid>`, the resource's
//! `job_output_directory_path_segment`) and the directory's `path_prefix`, neither of which an
//! ID carries: the function takes the job resource object (or any object with those two
//! attributes), never a bare ID.
use control::jobs::OutputDirectory;
use tfplug::{Function, FunctionError, Parameter, Signature, Type, Value};

/// The `job_output_path` function.
#[derive(Debug)]
pub struct JobOutputPath;

const SEGMENT: &str = "job_output_directory_path_segment";
const OUTPUTS: &str = "output_directories";

/// Why the first argument cannot give a path.
fn job_error(text: impl Into<String>) -> FunctionError {
    FunctionError::argument(0, text)
}

fn elements(value: &Value) -> &[Value] {
    match value {
        Value::List(items) | Value::Set(items) | Value::Tuple(items) => items,
        _ => &[],
    }
}

/// A known, non-null string attribute.
fn text<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value.get_attr(name).and_then(Value::as_str)
}

/// The path of output directory `output_id` of `job`, as the job names it.
pub fn output_path(job: &Value, output_id: &str) -> Result<String, FunctionError> {
    if let Some(id) = job.as_str() {
        return Err(job_error(format!(
            "{id:?} is a string, and a job ID does not determine output paths: they contain \
             the unique id of the job's submission (its {SEGMENT}) and the output directory's \
             path_prefix; pass the job resource itself, e.g. batchai_job.train"
        )));
    }
    if !matches!(job, Value::Object(_) | Value::Map(_)) {
        return Err(job_error(format!(
            "pass the job resource (e.g. batchai_job.train) or an object with {SEGMENT} and \
             {OUTPUTS}"
        )));
    }
    let attr = |name: &str| match job {
        Value::Map(m) | Value::Object(m) => m.get(name),
        _ => None,
    };
    let segment = attr(SEGMENT).and_then(Value::as_str).ok_or_else(|| {
        job_error(format!(
            "the job object has no {SEGMENT}; pass the job resource (e.g. batchai_job.train) \
             or an object with {SEGMENT} and {OUTPUTS}"
        ))
    })?;
    let outputs = attr(OUTPUTS).map(elements).unwrap_or_default();
    let found = outputs
        .iter()
        .find(|d| text(d, "id") == Some(output_id))
        .ok_or_else(|| {
            let ids: Vec<String> = outputs
                .iter()
                .filter_map(|d| text(d, "id"))
                .map(|id| format!("{id:?}"))
                .collect();
            let known = if ids.is_empty() {
                "it declares none".to_owned()
            } else {
                format!("it declares {}", ids.join(", "))
            };
            FunctionError::argument(
                1,
                format!("job {segment} has no output directory {output_id:?}; {known}"),
            )
        })?;
    let path_prefix = text(found, "path_prefix").ok_or_else(|| {
        job_error(format!(
            "output directory {output_id:?} of job {segment} has no path_prefix"
        ))
    })?;
    let directory = OutputDirectory {
        id: output_id.to_owned(),
        path_prefix: path_prefix.to_owned(),
        path_suffix: text(found, "path_suffix").map(str::to_owned),
    };
    Ok(directory.job_path(segment))
}

impl Function for JobOutputPath {
    fn name(&self) -> &'static str {
        "job_output_path"
    }

    fn signature(&self) -> Signature {
        Signature::new(
            "The path of one of a job's output directories.",
            vec![
                Parameter::new(
                    "job",
                    Type::Dynamic,
                    "The job: a `batchai_job` resource (e.g. `batchai_job.train`), or an \
                     object with its `job_output_directory_path_segment` and \
                     `output_directories`. A job ID is not enough: the path contains the \
                     unique id of the job's submission.",
                ),
                Parameter::new(
                    "output_id",
                    Type::String,
                    "The `id` of one of the job's `output_directories`.",
                ),
            ],
            Type::String,
        )
        .description(
            "Returns `<path_prefix>/<job_output_directory_path_segment>/<path_suffix>` for the \
             output directory `output_id`, exactly where the job's nodes create it and as the \
             job sees it in `$AZ_BATCHAI_OUTPUT_<id>`. A prefix that starts with \
             `$AZ_BATCHAI_MOUNT_ROOT` or `$AZ_BATCHAI_JOB_MOUNT_ROOT` keeps the variable, \
             which each node resolves to its own mount root. The segment, \
             `<cluster>/jobs/<job>/<unique id>`, is known once the job is created, so during \
             the plan that creates the job the result is unknown. A job ID alone does not \
             give the path, and is an error that says so. Terraform and OpenTofu make the result \
             sensitive when any part of an argument is, and a `batchai_job` has sensitive \
             attributes (its mounts' storage keys, `secrets`) even when they are null: an \
             output of the result needs `nonsensitive()` or `sensitive = true`, or pass an \
             object with just the two attributes.",
        )
        .example(
            "# The job resource's mounts have sensitive attributes, which make the result\n\
             # sensitive: an output shows it through nonsensitive().\n\
             output \"model_dir\" {\n  \
             # \"$AZ_BATCHAI_MOUNT_ROOT/data/gpu/jobs/train/<unique id>/models\"\n  \
             value = nonsensitive(provider::batchai::job_output_path(batchai_job.train, \"MODEL\"))\n\
             }\n\n\
             # The two attributes the path needs carry no sensitive value.\n\
             output \"model_dir_from_attributes\" {\n  \
             value = provider::batchai::job_output_path({\n    \
             job_output_directory_path_segment = batchai_job.train.job_output_directory_path_segment\n    \
             output_directories                = batchai_job.train.output_directories\n  \
             }, \"MODEL\")\n\
             }",
        )
    }

    fn call(&self, arguments: &[Value]) -> Result<Value, FunctionError> {
        let job = arguments.first().unwrap_or(&Value::Null);
        let output_id = arguments.get(1).and_then(Value::as_str).unwrap_or_default();
        output_path(job, output_id).map(Value::string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn output(id: &str, prefix: &str, suffix: Option<&str>) -> Value {
        obj(vec![
            ("id", Value::string(id)),
            ("path_prefix", Value::string(prefix)),
            ("path_suffix", suffix.map_or(Value::Null, Value::string)),
        ])
    }

    fn job(outputs: Value) -> Value {
        obj(vec![
            ("id", Value::string("local/clusters/gpu/jobs/train")),
            (SEGMENT, Value::string("gpu/jobs/train/0f3a")),
            (OUTPUTS, outputs),
        ])
    }

    #[test]
    fn paths_follow_the_layout_nodes_create() {
        let outputs = Value::List(vec![
            output("MODEL", "$AZ_BATCHAI_MOUNT_ROOT/data", Some("models")),
            output("LOGS", "/srv/out/", None),
        ]);
        let cases = [
            (
                "MODEL",
                "$AZ_BATCHAI_MOUNT_ROOT/data/gpu/jobs/train/0f3a/models",
            ),
            ("LOGS", "/srv/out/gpu/jobs/train/0f3a"),
        ];
        for (id, want) in cases {
            assert_eq!(
                output_path(&job(outputs.clone()), id).as_deref(),
                Ok(want),
                "{id}"
            );
        }
        // An object literal's list is a tuple; a map of strings is no job.
        let literal = obj(vec![
            (SEGMENT, Value::string("c/jobs/j/u")),
            (
                OUTPUTS,
                Value::Tuple(vec![output("OUT", "/o", Some("a/b"))]),
            ),
        ]);
        assert_eq!(
            output_path(&literal, "OUT").as_deref(),
            Ok("/o/c/jobs/j/u/a/b")
        );
    }

    #[test]
    fn what_cannot_give_a_path_is_an_error_on_its_argument() {
        let outputs = Value::List(vec![output("MODEL", "/m", None)]);
        let no_segment = obj(vec![(OUTPUTS, outputs.clone())]);
        let cases: [(Value, &str, usize, &str); 5] = [
            (
                Value::string("local/clusters/gpu/jobs/train"),
                "MODEL",
                0,
                "a job ID does not determine output paths",
            ),
            (Value::number(3), "MODEL", 0, "pass the job resource"),
            (
                no_segment,
                "MODEL",
                0,
                "has no job_output_directory_path_segment",
            ),
            (
                job(outputs),
                "CHECKPOINTS",
                1,
                "has no output directory \"CHECKPOINTS\"; it declares \"MODEL\"",
            ),
            (job(Value::Null), "MODEL", 1, "it declares none"),
        ];
        for (value, id, argument, want) in cases {
            let err = JobOutputPath
                .call(&[value.clone(), Value::string(id)])
                .err()
                .unwrap_or_else(|| panic!("{value:?} gave a path"));
            assert_eq!(err.argument, Some(argument), "{}", err.text);
            assert!(err.text.contains(want), "{}", err.text);
        }
    }
}
