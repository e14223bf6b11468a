//! `provider::batchai::vm_size(size)`: what an Azure VM size offers, from the agent's size
//! table (`agent::gpu::VM_SIZES`), the one the provider's GPU checks and the nodes read too.
use agent::gpu::{self, VM_SIZES};
use tfplug::{Function, FunctionError, Parameter, Signature, Type, Value};

use super::{object, string_or_null};

/// The `vm_size` function.
#[derive(Debug)]
pub struct VmSize;

fn return_type() -> Type {
    Type::object([
        ("name", Type::String),
        ("vcpus", Type::Number),
        ("memory_gib", Type::Number),
        ("gpus", Type::Number),
        ("gpu_model", Type::String),
        ("interconnect", Type::String),
    ])
}

/// The error for a size the table does not know: the nearest known ones, and where the rest
/// are found.
fn unknown(size: &str) -> String {
    format!(
        "unknown VM size {size:?}; the nearest known sizes are {}. Sizes are matched without \
         regard to case, with or without \"Standard_\"; this provider knows Azure's GPU sizes \
         (NC, ND, NV series) and common general-purpose and HPC sizes ({} in all); list a \
         region's sizes with `az vm list-sizes --location <region>`",
        gpu::nearest_sizes(size, 3).join(", "),
        VM_SIZES.len()
    )
}

impl Function for VmSize {
    fn name(&self) -> &'static str {
        "vm_size"
    }

    fn signature(&self) -> Signature {
        Signature::new(
            "What an Azure VM size offers: vCPUs, memory, GPUs, GPU model and interconnect.",
            vec![Parameter::new(
                "size",
                Type::String,
                "An Azure VM size, such as `Standard_NC24ads_A100_v4`; any case, with or \
                 without the `Standard_` prefix.",
            )],
            return_type(),
        )
        .description(
            "Looks a VM size up in the table the provider's agents use to give nodes their \
             GPUs, and returns an object with `name` (Azure's spelling), `vcpus`, \
             `memory_gib`, `gpus`, `gpu_model` (null for sizes without GPUs) and \
             `interconnect` (the RDMA network between VMs, such as `InfiniBand HDR`, or \
             `none`). The table covers Azure's GPU sizes (NC, ND and NV series, K80 to H100) \
             and common general-purpose and HPC sizes; an unknown size is an error that names \
             the nearest known ones. Useful to derive `gpus_per_node` or MPI settings from a \
             cluster's `vm_size`, or to check a size before a plan.",
        )
        .example(
            "locals {\n  \
             size = provider::batchai::vm_size(\"Standard_ND96isr_H100_v5\")\n\
             }\n\n\
             output \"gpus_per_node\" {\n  \
             # 8\n  \
             value = local.size.gpus\n\
             }\n\n\
             output \"multi_node_ready\" {\n  \
             # true: \"InfiniBand NDR\"\n  \
             value = local.size.interconnect != \"none\"\n\
             }",
        )
    }

    fn call(&self, arguments: &[Value]) -> Result<Value, FunctionError> {
        let size = arguments
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default();
        let found = gpu::vm_size(size).ok_or_else(|| FunctionError::argument(0, unknown(size)))?;
        Ok(object([
            ("name", Value::string(gpu::azure_name(found))),
            ("vcpus", Value::number(found.vcpus)),
            ("memory_gib", Value::number(found.memory_gib)),
            ("gpus", Value::number(found.gpus)),
            (
                "gpu_model",
                string_or_null(Some(found.gpu_model).filter(|m| !m.is_empty())),
            ),
            ("interconnect", Value::string(found.interconnect)),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(size: &str) -> Result<Value, FunctionError> {
        VmSize.call(&[Value::string(size)])
    }

    #[test]
    fn sizes_in_any_case_with_or_without_the_prefix() {
        let cases = [
            (
                "Standard_NC6s_v3",
                "Standard_NC6s_v3",
                6,
                112,
                1,
                Some("Tesla V100"),
                "none",
            ),
            (
                "nc24ads_a100_v4",
                "Standard_NC24ads_A100_v4",
                24,
                220,
                1,
                Some("A100 80GB PCIe"),
                "none",
            ),
            (
                "STANDARD_ND96ISR_H100_V5",
                "Standard_ND96isr_H100_v5",
                96,
                1900,
                8,
                Some("H100 80GB SXM5"),
                "InfiniBand NDR",
            ),
            (
                "Standard_NC24rs_v3",
                "Standard_NC24rs_v3",
                24,
                448,
                4,
                Some("Tesla V100"),
                "InfiniBand FDR",
            ),
            ("Standard_D2s_v3", "Standard_D2s_v3", 2, 8, 0, None, "none"),
        ];
        for (input, name, vcpus, memory, gpus, model, interconnect) in cases {
            let v = call(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(v.conforms_to(&return_type()), Ok(()), "{input}");
            let attr = |n: &str| v.get_attr(n).cloned().unwrap_or(Value::Null);
            assert_eq!(attr("name"), Value::string(name), "{input}");
            assert_eq!(attr("vcpus"), Value::number(vcpus), "{input}");
            assert_eq!(attr("memory_gib"), Value::number(memory), "{input}");
            assert_eq!(attr("gpus"), Value::number(gpus), "{input}");
            assert_eq!(
                attr("gpu_model"),
                model.map_or(Value::Null, Value::string),
                "{input}"
            );
            assert_eq!(attr("interconnect"), Value::string(interconnect), "{input}");
        }
    }

    #[test]
    fn unknown_sizes_are_argument_errors_naming_the_nearest_sizes() {
        let cases = [
            ("Standard_NC6s_v4", "Standard_NC6s_v3"),
            ("Standard_ND96isr_H200_v5", "Standard_ND96isr_H100_v5"),
            ("", "Standard_"),
        ];
        for (input, near) in cases {
            let err = call(input)
                .err()
                .unwrap_or_else(|| panic!("{input} was accepted"));
            assert_eq!(err.argument, Some(0));
            assert!(
                err.text.starts_with(&format!("unknown VM size {input:?}")),
                "{}",
                err.text
            );
            assert!(err.text.contains(near), "{}", err.text);
            assert!(err.text.contains("az vm list-sizes"), "{}", err.text);
        }
    }
}
