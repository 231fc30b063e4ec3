//! A point ready to run: its tensors on the device (inputs drawn from the seed in
//! the point's distribution, the output), the bind group that hands them to a pipeline, and the `PreparedKernel`
//! the protocol drives. The tensors are separate from the pipeline so that the
//! variant search can time several pipelines on one set of buffers.

use crate::attention;
use crate::gpu::{device_bytes, Gpu};
use crate::submit::{Dispatch, Runner, Submission};
use joulebench_core::inputs::InputDistribution;
use joulebench_core::reference::CheckInputs;
use joulebench_core::{BackendError, Precision, PreparedKernel, RunTiming, Workload};

/// A workload's tensors on the device, in binding order: the uniform shape block,
/// the inputs (A, B or Q, K, V) and the output.
pub(crate) struct Tensors {
    uniform: wgpu::Buffer,
    /// Input tensors with their element counts.
    inputs: Vec<(wgpu::Buffer, usize)>,
    output: wgpu::Buffer,
    output_len: usize,
    precision: Precision,
}

impl Tensors {
    pub fn new(
        gpu: &Gpu,
        precision: Precision,
        workload: &Workload,
        seed: u64,
        inputs: InputDistribution,
    ) -> Result<Self, BackendError> {
        let (params, tensors, names): (Vec<u8>, Vec<Vec<f32>>, &[&str]) = match (
            workload,
            CheckInputs::generate_with(workload, precision, seed, inputs),
        ) {
            (Workload::Matmul(s), CheckInputs::Matmul { a, b }) => {
                let words = [s.batch, s.m, s.n, s.k].map(|x| x as u32);
                (
                    words.iter().flat_map(|w| w.to_le_bytes()).collect(),
                    vec![a, b],
                    &["A", "B"],
                )
            }
            (Workload::Attention(s), CheckInputs::Attention { q, k, v }) => {
                (attention::params_bytes(s), vec![q, k, v], &["Q", "K", "V"])
            }
            _ => return Err(BackendError::Device("inputs do not match the op".into())),
        };
        let uniform = gpu.uniform("params", &params)?;
        let mut inputs = Vec::with_capacity(tensors.len());
        for (values, name) in tensors.iter().zip(names) {
            let buffer = gpu.storage(name, device_bytes(values.len() as u64, precision))?;
            gpu.upload(&buffer, values, precision);
            inputs.push((buffer, values.len()));
        }
        let output_len = workload.output_len();
        let output = gpu.storage("output", device_bytes(output_len as u64, precision))?;
        Ok(Tensors {
            uniform,
            inputs,
            output,
            output_len,
            precision,
        })
    }

    /// The bind group that hands these tensors to `pipeline` (binding 0 the uniform,
    /// then the inputs, then the output).
    pub fn bind(
        &self,
        gpu: &Gpu,
        pipeline: &wgpu::ComputePipeline,
    ) -> Result<wgpu::BindGroup, BackendError> {
        let layout = pipeline.get_bind_group_layout(0);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: self.uniform.as_entire_binding(),
        }];
        for (i, (buffer, _)) in self.inputs.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: buffer.as_entire_binding(),
            });
        }
        entries.push(wgpu::BindGroupEntry {
            binding: self.inputs.len() as u32 + 1,
            resource: self.output.as_entire_binding(),
        });
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("kernel bindings"),
            layout: &layout,
            entries: &entries,
        });
        gpu.check("binding buffers")?;
        Ok(bind_group)
    }
}

/// One point ready to run: its pipeline, tensors and bind group.
pub(crate) struct Prepared<'a> {
    gpu: &'a Gpu,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    tensors: Tensors,
    workgroups: [u32; 3],
    variant: String,
    submission: Submission,
    runner: Runner,
}

impl<'a> Prepared<'a> {
    pub fn new(
        gpu: &'a Gpu,
        pipeline: wgpu::ComputePipeline,
        tensors: Tensors,
        workgroups: [u32; 3],
        variant: String,
        submission: Submission,
    ) -> Result<Self, BackendError> {
        let bind_group = tensors.bind(gpu, &pipeline)?;
        Ok(Prepared {
            gpu,
            pipeline,
            bind_group,
            tensors,
            workgroups,
            variant,
            submission,
            runner: Runner::new(gpu)?,
        })
    }
}

impl PreparedKernel for Prepared<'_> {
    fn run_for_check(&mut self, inputs: &CheckInputs) -> Result<Vec<f32>, BackendError> {
        let t = &self.tensors;
        let values: Vec<&[f32]> = inputs.tensors();
        if values.len() != t.inputs.len()
            || values
                .iter()
                .zip(&t.inputs)
                .any(|(v, (_, len))| v.len() != *len)
        {
            return Err(BackendError::Device(
                "check inputs do not match the prepared shape".into(),
            ));
        }
        for (v, (buffer, _)) in values.iter().zip(&t.inputs) {
            self.gpu.upload(buffer, v, t.precision);
        }
        self.gpu.poison(&t.output, t.output_len, t.precision);
        self.gpu
            .run(&self.pipeline, &self.bind_group, self.workgroups, 1)?;
        self.gpu.download(&t.output, t.output_len, t.precision)
    }

    fn run(&mut self, iterations: u64) -> Result<RunTiming, BackendError> {
        match self.submission {
            Submission::Pipelined => self.runner.run(
                self.gpu,
                &Dispatch {
                    pipeline: &self.pipeline,
                    bind_group: &self.bind_group,
                    workgroups: self.workgroups,
                },
                iterations,
            ),
            Submission::Serial => self.gpu.run(
                &self.pipeline,
                &self.bind_group,
                self.workgroups,
                iterations,
            ),
        }
    }

    fn variant(&self) -> Option<String> {
        Some(self.variant.clone())
    }
}
