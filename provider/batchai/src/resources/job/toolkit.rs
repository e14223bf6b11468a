//! The toolkit blocks of `batchai_job`, in one table: each toolkit is one model (its block,
//! its description and checks) that says how it becomes the [`Toolkit`] agents launch, and a
//! job sets exactly one.
//!
//! Adding a toolkit touches this file only: its model and [`ToolkitBlock`] impl, its field in
//! [`Toolkits`] (named in `exactly_one_of`) and its row in [`Toolkits::table`]; then its
//! `Toolkit` variant in `control::jobs` and its launch semantics in `agent::toolkit`, the
//! layers below.
use control::jobs::{Script, Toolkit};
use serde::{Deserialize, Serialize};
use tfplug::{AttributePath, Diagnostic, Diagnostics, Model};

use super::model::JobModel;

/// The most processes (ranks) a job may start.
const MAX_PROCESSES: i64 = 100_000;

/// A toolkit block: a declared model that becomes the toolkit the job's spec holds.
pub(crate) trait ToolkitBlock: Sync {
    fn toolkit(&self) -> Toolkit;

    /// Checks against the job around the block; `node_count` is the job's (its default when
    /// unset). Paths are relative to the block.
    fn check_against_job(&self, node_count: u32) -> Diagnostics {
        let _ = node_count;
        Diagnostics::new()
    }
}

/// The toolkit blocks; a job sets exactly one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
#[tf(
    exactly_one_of(
        custom_toolkit,
        custom_mpi,
        horovod,
        chainer,
        cntk,
        pytorch,
        tensorflow,
        caffe,
        caffe2,
        deepspeed
    ),
    summary = "exactly one toolkit block"
)]
pub(crate) struct Toolkits {
    #[tf(block, replace)]
    pub custom_toolkit: Option<CustomToolkitModel>,
    #[tf(block, replace)]
    pub custom_mpi: Option<CustomMpiModel>,
    #[tf(block, replace)]
    pub horovod: Option<HorovodModel>,
    #[tf(block, replace)]
    pub chainer: Option<ChainerModel>,
    #[tf(block, replace)]
    pub cntk: Option<CntkModel>,
    #[tf(block, replace)]
    pub pytorch: Option<PytorchModel>,
    #[tf(block, replace)]
    pub tensorflow: Option<TensorflowModel>,
    #[tf(block, replace)]
    pub caffe: Option<CaffeModel>,
    #[tf(block, replace)]
    pub caffe2: Option<Caffe2Model>,
    #[tf(block, replace)]
    pub deepspeed: Option<DeepspeedModel>,
}

impl Toolkits {
    /// Every toolkit block by name, with its model when set: the one list that spec building
    /// and the job-level checks go through.
    pub(crate) fn table(&self) -> Vec<(&'static str, Option<&dyn ToolkitBlock>)> {
        fn set<T: ToolkitBlock>(block: Option<&T>) -> Option<&dyn ToolkitBlock> {
            block.map(|b| b as &dyn ToolkitBlock)
        }
        vec![
            ("custom_toolkit", set(self.custom_toolkit.as_ref())),
            ("custom_mpi", set(self.custom_mpi.as_ref())),
            ("horovod", set(self.horovod.as_ref())),
            ("chainer", set(self.chainer.as_ref())),
            ("cntk", set(self.cntk.as_ref())),
            ("pytorch", set(self.pytorch.as_ref())),
            ("tensorflow", set(self.tensorflow.as_ref())),
            ("caffe", set(self.caffe.as_ref())),
            ("caffe2", set(self.caffe2.as_ref())),
            ("deepspeed", set(self.deepspeed.as_ref())),
        ]
    }

    /// The toolkit the job runs: the block that is set (validation allows exactly one).
    pub(crate) fn toolkit(&self) -> Result<Toolkit, Diagnostics> {
        let table = self.table();
        if let Some(block) = table.iter().find_map(|(_, block)| *block) {
            return Ok(block.toolkit());
        }
        let names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
        Err(Diagnostic::error(
            "exactly one toolkit block",
            format!(
                "a job needs exactly one toolkit block; add one of: {}",
                names.join(", ")
            ),
        )
        .into())
    }
}

/// The job-level check of the toolkit blocks: each set block against the job's `node_count`
/// (its default, 1, when unset).
pub(super) fn check_against_job(job: &JobModel) -> Diagnostics {
    let node_count = job.node_count.unwrap_or(1);
    let mut diags = Diagnostics::new();
    for (name, block) in job.toolkits.table() {
        let Some(block) = block else {
            continue;
        };
        for mut d in block.check_against_job(node_count) {
            let mut path = AttributePath::attrs([name]);
            path.0.extend(d.path.take().unwrap_or_default().0);
            diags.push(d.at(path));
        }
    }
    diags
}

/// The script of a Python toolkit.
fn script(path: Option<&String>, interpreter: Option<&String>, args: Option<&String>) -> Script {
    Script {
        python_script_file_path: path.cloned().unwrap_or_default(),
        python_interpreter_path: interpreter.cloned(),
        command_line_args: args.cloned(),
    }
}

/// A Python script with its interpreter and arguments, as most toolkits take it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct ScriptModel {
    /// The Python script to run; may use `$AZ_BATCHAI_MOUNT_ROOT` and other job variables.
    #[tf(required)]
    pub python_script_file_path: Option<String>,
    /// The Python interpreter; `python3` on the node's PATH when unset.
    #[tf(optional)]
    pub python_interpreter_path: Option<String>,
    /// Arguments for the script, interpreted by `bash` on the node.
    #[tf(optional)]
    pub command_line_args: Option<String>,
}

impl ScriptModel {
    fn script(&self) -> Script {
        script(
            self.python_script_file_path.as_ref(),
            self.python_interpreter_path.as_ref(),
            self.command_line_args.as_ref(),
        )
    }
}

/// A command on the master node only; the other nodes are held for it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct CustomToolkitModel {
    /// Run with `bash -c` on the master node (the first of the job's nodes).
    #[tf(required)]
    pub command_line: Option<String>,
}

impl ToolkitBlock for CustomToolkitModel {
    fn toolkit(&self) -> Toolkit {
        Toolkit::CustomToolkit {
            command_line: self.command_line.clone().unwrap_or_default(),
        }
    }
}

/// A command started by OpenMPI's `mpirun` across the job's nodes, with
/// `$AZ_BATCHAI_MPI_HOST_FILE` as the hostfile. Needs `mpirun` (Debian `openmpi-bin`) on the
/// nodes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct CustomMpiModel {
    /// What `mpirun` starts on every rank, e.g. `python3 train.py`. Ranks see
    /// `OMPI_COMM_WORLD_RANK` and the job's environment.
    #[tf(required)]
    pub command_line: Option<String>,
    /// Processes (ranks) to start in all, spread evenly over the nodes. Defaults to
    /// `node_count`.
    #[tf(optional, range(1, MAX_PROCESSES))]
    pub process_count: Option<u32>,
}

impl ToolkitBlock for CustomMpiModel {
    fn toolkit(&self) -> Toolkit {
        Toolkit::CustomMpi {
            command_line: self.command_line.clone().unwrap_or_default(),
            process_count: self.process_count,
        }
    }
}

/// A Horovod script, started with `mpirun` on every rank.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct HorovodModel {
    #[tf(flatten)]
    #[serde(flatten)]
    pub script: ScriptModel,
    /// Processes (ranks) to start in all, spread evenly over the nodes. Defaults to
    /// `node_count`.
    #[tf(optional, range(1, MAX_PROCESSES))]
    pub process_count: Option<u32>,
}

impl ToolkitBlock for HorovodModel {
    fn toolkit(&self) -> Toolkit {
        Toolkit::Horovod {
            script: self.script.script(),
            process_count: self.process_count,
        }
    }
}

/// A ChainerMN script, started with `mpirun` on every rank.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct ChainerModel {
    #[tf(flatten)]
    #[serde(flatten)]
    pub script: ScriptModel,
    /// Processes (ranks) to start in all, spread evenly over the nodes. Defaults to
    /// `node_count`.
    #[tf(optional, range(1, MAX_PROCESSES))]
    pub process_count: Option<u32>,
}

impl ToolkitBlock for ChainerModel {
    fn toolkit(&self) -> Toolkit {
        Toolkit::Chainer {
            script: self.script.script(),
            process_count: self.process_count,
        }
    }
}

/// A CNTK job, started with `mpirun` on every rank.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
#[tf(check(
    cntk_needs_its_file,
    known(language_type, config_file_path, python_script_file_path)
))]
pub(crate) struct CntkModel {
    /// `python` (the default) runs `python_script_file_path`; `brainscript` runs
    /// `cntk configFile=<config_file_path>`.
    #[tf(default = "python", one_of_ignoring_case("python", "brainscript"))]
    pub language_type: Option<String>,
    /// The BrainScript configuration file.
    #[tf(optional)]
    pub config_file_path: Option<String>,
    /// The Python script (language `python`).
    #[tf(optional)]
    pub python_script_file_path: Option<String>,
    /// The Python interpreter; `python3` on the node's PATH when unset.
    #[tf(optional)]
    pub python_interpreter_path: Option<String>,
    /// Arguments for the script, interpreted by `bash` on the node.
    #[tf(optional)]
    pub command_line_args: Option<String>,
    /// Processes (ranks) to start in all, spread evenly over the nodes. Defaults to
    /// `node_count`.
    #[tf(optional, range(1, MAX_PROCESSES))]
    pub process_count: Option<u32>,
}

/// A CNTK job runs the file of its language (an unknown language is its validator's error).
fn cntk_needs_its_file(cntk: &CntkModel) -> Diagnostics {
    let missing = |field: &str, language: &str| {
        Diagnostic::error(
            format!("missing {field}"),
            format!("a cntk job in {language} needs {field}"),
        )
        .at(AttributePath::attrs([field]))
        .into()
    };
    let language = cntk.language_type.as_deref().map(str::to_ascii_lowercase);
    match language.as_deref() {
        None | Some("python") if cntk.python_script_file_path.is_none() => {
            missing("python_script_file_path", "Python")
        }
        Some("brainscript") if cntk.config_file_path.is_none() => {
            missing("config_file_path", "BrainScript")
        }
        _ => Diagnostics::new(),
    }
}

impl ToolkitBlock for CntkModel {
    fn toolkit(&self) -> Toolkit {
        Toolkit::Cntk {
            // The plan holds the configured language or the declared default; agents run the
            // Python script for anything but `brainscript`.
            language_type: self
                .language_type
                .as_deref()
                .unwrap_or_default()
                .to_ascii_lowercase(),
            config_file_path: self.config_file_path.clone(),
            script: script(
                self.python_script_file_path.as_ref(),
                self.python_interpreter_path.as_ref(),
                self.command_line_args.as_ref(),
            ),
            process_count: self.process_count,
        }
    }
}

/// A PyTorch distributed job: one process per rank with the rendezvous variables (`RANK`,
/// `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`,
/// `AZ_BATCHAI_PYTORCH_INIT_METHOD`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct PytorchModel {
    #[tf(flatten)]
    #[serde(flatten)]
    pub script: ScriptModel,
    /// Processes (ranks) to start in all, spread evenly over the nodes. Defaults to
    /// `node_count`.
    #[tf(optional, range(1, MAX_PROCESSES))]
    pub process_count: Option<u32>,
    /// `gloo` (the default), `nccl`, `tcp` or `mpi`. With `mpi` the ranks are started by
    /// `mpirun`; otherwise each node starts its share with `RANK`, `WORLD_SIZE`,
    /// `LOCAL_RANK`, `MASTER_ADDR` and `MASTER_PORT` set.
    #[tf(optional, one_of_ignoring_case("gloo", "nccl", "tcp", "mpi"))]
    pub communication_backend: Option<String>,
}

impl ToolkitBlock for PytorchModel {
    fn toolkit(&self) -> Toolkit {
        Toolkit::Pytorch {
            script: self.script.script(),
            process_count: self.process_count,
            communication_backend: self.communication_backend.clone(),
        }
    }
}

/// Distributed TensorFlow: workers and parameter servers spread over the nodes, each with
/// `TF_CONFIG`, `AZ_BATCHAI_PS_HOSTS`, `AZ_BATCHAI_WORKER_HOSTS` and `AZ_BATCHAI_TASK_INDEX`.
/// The job ends when every worker has; parameter servers are then stopped.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct TensorflowModel {
    /// The Python script to run; may use `$AZ_BATCHAI_MOUNT_ROOT` and other job variables.
    #[tf(required)]
    pub python_script_file_path: Option<String>,
    /// The Python interpreter; `python3` on the node's PATH when unset.
    #[tf(optional)]
    pub python_interpreter_path: Option<String>,
    /// Arguments for worker 0 (the master).
    #[tf(optional)]
    pub master_command_line_args: Option<String>,
    /// Arguments for the other workers.
    #[tf(optional)]
    pub worker_command_line_args: Option<String>,
    /// Arguments for the parameter servers.
    #[tf(optional)]
    pub parameter_server_command_line_args: Option<String>,
    /// Workers in all; defaults to `node_count`.
    #[tf(optional)]
    pub worker_count: Option<u32>,
    /// Parameter servers in all, at most `node_count`; defaults to 1 for distributed jobs
    /// and 0 otherwise.
    #[tf(optional)]
    pub parameter_server_count: Option<u32>,
}

impl ToolkitBlock for TensorflowModel {
    fn toolkit(&self) -> Toolkit {
        Toolkit::Tensorflow {
            script: script(
                self.python_script_file_path.as_ref(),
                self.python_interpreter_path.as_ref(),
                None,
            ),
            master_command_line_args: self.master_command_line_args.clone(),
            worker_command_line_args: self.worker_command_line_args.clone(),
            parameter_server_command_line_args: self.parameter_server_command_line_args.clone(),
            worker_count: self.worker_count,
            parameter_server_count: self.parameter_server_count,
        }
    }

    /// Parameter servers are spread one per node.
    fn check_against_job(&self, node_count: u32) -> Diagnostics {
        match self.parameter_server_count {
            Some(ps) if ps > node_count => Diagnostic::error(
                "invalid parameter_server_count",
                format!("parameter_server_count ({ps}) may be at most node_count ({node_count})"),
            )
            .at(AttributePath::attrs(["parameter_server_count"]))
            .into(),
            _ => Diagnostics::new(),
        }
    }
}

/// A Caffe job: set exactly one of `config_file_path` and `python_script_file_path`. More
/// than one process runs under `mpirun`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
#[tf(
    exactly_one_of(config_file_path, python_script_file_path),
    summary = "invalid caffe block"
)]
pub(crate) struct CaffeModel {
    /// The solver: runs `caffe train --solver=<path>`.
    #[tf(optional)]
    pub config_file_path: Option<String>,
    /// A pycaffe script, instead of `config_file_path`.
    #[tf(optional)]
    pub python_script_file_path: Option<String>,
    /// The Python interpreter; `python3` on the node's PATH when unset.
    #[tf(optional)]
    pub python_interpreter_path: Option<String>,
    /// Arguments for the script, interpreted by `bash` on the node.
    #[tf(optional)]
    pub command_line_args: Option<String>,
    /// Processes (ranks) to start in all, spread evenly over the nodes. Defaults to
    /// `node_count`.
    #[tf(optional, range(1, MAX_PROCESSES))]
    pub process_count: Option<u32>,
}

impl ToolkitBlock for CaffeModel {
    fn toolkit(&self) -> Toolkit {
        Toolkit::Caffe {
            config_file_path: self.config_file_path.clone(),
            script: script(
                self.python_script_file_path.as_ref(),
                self.python_interpreter_path.as_ref(),
                self.command_line_args.as_ref(),
            ),
            process_count: self.process_count,
        }
    }
}

/// A Caffe2 script on the master node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct Caffe2Model {
    #[tf(flatten)]
    #[serde(flatten)]
    pub script: ScriptModel,
}

impl ToolkitBlock for Caffe2Model {
    fn toolkit(&self) -> Toolkit {
        Toolkit::Caffe2 {
            script: self.script.script(),
        }
    }
}

/// A DeepSpeed script, launched as `pytorch` launches its ranks (one process per rank with
/// `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and `MASTER_PORT`, which
/// `deepspeed.init_distributed()` reads), with `--deepspeed --deepspeed_config
/// <deepspeed_config_path>` before the script's own arguments. Needs the `deepspeed` package in the
/// interpreter the script runs with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub(crate) struct DeepspeedModel {
    #[tf(flatten)]
    #[serde(flatten)]
    pub script: ScriptModel,
    /// The DeepSpeed configuration (JSON) passed as `--deepspeed_config`; may use
    /// `$AZ_BATCHAI_MOUNT_ROOT` and other job variables.
    #[tf(required)]
    pub deepspeed_config_path: Option<String>,
    /// Processes (ranks) to start in all, spread evenly over the nodes. Defaults to
    /// `node_count`.
    #[tf(optional, range(1, MAX_PROCESSES))]
    pub process_count: Option<u32>,
}

impl ToolkitBlock for DeepspeedModel {
    fn toolkit(&self) -> Toolkit {
        Toolkit::Deepspeed {
            script: self.script.script(),
            deepspeed_config_path: self.deepspeed_config_path.clone().unwrap_or_default(),
            process_count: self.process_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use tfplug::validate::BlockRule;

    use super::*;

    #[test]
    fn every_toolkit_block_is_in_the_table_and_the_choice_once() {
        let block = Toolkits::block();
        let blocks: Vec<String> = block.blocks.iter().map(|b| b.type_name.clone()).collect();
        let all = Toolkits {
            custom_toolkit: Some(CustomToolkitModel::default()),
            custom_mpi: Some(CustomMpiModel::default()),
            horovod: Some(HorovodModel::default()),
            chainer: Some(ChainerModel::default()),
            cntk: Some(CntkModel::default()),
            pytorch: Some(PytorchModel::default()),
            tensorflow: Some(TensorflowModel::default()),
            caffe: Some(CaffeModel::default()),
            caffe2: Some(Caffe2Model::default()),
            deepspeed: Some(DeepspeedModel::default()),
        };
        let table = all.table();
        let listed: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
        assert_eq!(listed, blocks);
        // Each row's model becomes its own toolkit.
        for &(name, block) in &table {
            let block = block.unwrap_or_else(|| panic!("{name} is not set"));
            assert_eq!(block.toolkit().block(), name);
        }
        let choices: Vec<&str> = block
            .checks
            .iter()
            .find_map(|c| match &c.rule {
                BlockRule::ExactlyOneOf(names) => Some(names.clone()),
                BlockRule::Custom { .. } => None,
            })
            .unwrap_or_default();
        assert_eq!(choices, blocks);
    }
}
