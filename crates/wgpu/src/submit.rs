//! How a block of iterations reaches the device, so that an energy window's device
//! is as busy as CUDA's (docs/ARCHITECTURE.md §4.3): the block is split into
//! two submissions, the second encoded while the first runs, so the queue is
//! never empty; the first submission of the next block is encoded ahead, while this
//! block runs; the pass timestamps are resolved and copied for reading inside the
//! block's last submission and mapped as it completes, so no read-back round trip
//! idles the device between blocks. The serial way (encode everything, submit,
//! wait, then resolve and read back in a second round trip) is kept to measure what
//! this gains.

use crate::gpu::Gpu;
use joulebench_core::{BackendError, RunTiming};
use std::sync::mpsc;
use std::time::Instant;

/// At most this many timed passes per block, each with its own begin/end
/// timestamps in one query set: few, since the device may idle between passes.
const MAX_TIMED_PASSES: u64 = 4;
/// Passes per submission: a block of 4 passes goes to the device in 2
/// submissions, the second encoded while the first runs (on lavapipe, fewer
/// passes per submission left the device idle longer between them).
const PASSES_PER_SUBMISSION: u64 = 2;

/// How a prepared kernel submits its blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Submission {
    /// Several submissions in flight, the next block's first one encoded ahead,
    /// the timestamps read back with the block's last submission.
    #[default]
    Pipelined,
    /// Everything encoded before one submission, then a wait, then a second round
    /// trip to resolve and read the timestamps: the device idles for the encoding
    /// and the read-back of every block.
    Serial,
}

/// The buffers a pipelined runner reuses, and the submission it encoded ahead.
pub(crate) struct Runner {
    query_set: Option<wgpu::QuerySet>,
    resolve: Option<wgpu::Buffer>,
    readback: Option<wgpu::Buffer>,
    /// The first submission of a block of this many iterations, encoded ahead.
    ahead: Option<(u64, wgpu::CommandBuffer)>,
}

/// The dispatches each timed pass of a block of `iterations` runs, in order.
fn pass_plan(iterations: u64) -> Vec<u64> {
    let passes = iterations.min(MAX_TIMED_PASSES);
    (0..passes)
        .map(|p| iterations / passes + u64::from(p < iterations % passes))
        .collect()
}

impl Runner {
    pub fn new(gpu: &Gpu) -> Result<Runner, BackendError> {
        if !gpu.timestamps {
            return Ok(Runner {
                query_set: None,
                resolve: None,
                readback: None,
                ahead: None,
            });
        }
        let bytes = 2 * MAX_TIMED_PASSES * wgpu::QUERY_SIZE as u64;
        let query_set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("pass timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * MAX_TIMED_PASSES as u32,
        });
        let resolve = gpu.buffer(
            "timestamps",
            bytes,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        )?;
        let readback = gpu.buffer(
            "timestamps readback",
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        gpu.check("timestamp buffers")?;
        Ok(Runner {
            query_set: Some(query_set),
            resolve: Some(resolve),
            readback: Some(readback),
            ahead: None,
        })
    }

    /// Encode passes `range` of `plan` into one command buffer; the block's last
    /// one also resolves the timestamps and copies them for reading.
    fn encode(
        &self,
        gpu: &Gpu,
        kernel: &Dispatch<'_>,
        plan: &[u64],
        range: std::ops::Range<usize>,
    ) -> wgpu::CommandBuffer {
        let last = range.end == plan.len();
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("run") });
        for p in range {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("run"),
                timestamp_writes: self.query_set.as_ref().map(|query_set| {
                    wgpu::ComputePassTimestampWrites {
                        query_set,
                        beginning_of_pass_write_index: Some(2 * p as u32),
                        end_of_pass_write_index: Some(2 * p as u32 + 1),
                    }
                }),
            });
            pass.set_pipeline(kernel.pipeline);
            pass.set_bind_group(0, kernel.bind_group, &[]);
            let [x, y, z] = kernel.workgroups;
            for _ in 0..plan[p] {
                pass.dispatch_workgroups(x, y, z);
            }
        }
        if last {
            if let (Some(q), Some(resolve), Some(readback)) =
                (&self.query_set, &self.resolve, &self.readback)
            {
                let n = 2 * plan.len() as u32;
                encoder.resolve_query_set(q, 0..n, resolve, 0);
                let bytes = n as u64 * wgpu::QUERY_SIZE as u64;
                encoder.copy_buffer_to_buffer(resolve, 0, readback, 0, bytes);
            }
        }
        encoder.finish()
    }

    /// Run `iterations` dispatches in a block and wait for them: wall time from the
    /// first submission to completion, device time the sum of the passes' own.
    pub fn run(
        &mut self,
        gpu: &Gpu,
        kernel: &Dispatch<'_>,
        iterations: u64,
    ) -> Result<RunTiming, BackendError> {
        if iterations == 0 {
            return Ok(RunTiming {
                wall_s: 0.0,
                device_s: gpu.timestamps.then_some(0.0),
            });
        }
        let plan = pass_plan(iterations);
        let chunks: Vec<std::ops::Range<usize>> = (0..plan.len())
            .step_by(PASSES_PER_SUBMISSION as usize)
            .map(|s| s..(s + PASSES_PER_SUBMISSION as usize).min(plan.len()))
            .collect();
        let first = match self.ahead.take() {
            Some((n, commands)) if n == iterations => commands,
            _ => self.encode(gpu, kernel, &plan, chunks[0].clone()),
        };
        gpu.check("encoding")?;
        let start = Instant::now();
        gpu.queue.submit([first]);
        for chunk in &chunks[1..] {
            // encoded while the submissions before it run
            let commands = self.encode(gpu, kernel, &plan, chunk.clone());
            gpu.queue.submit([commands]);
        }
        let mapped = self.readback.as_ref().map(|readback| {
            let (tx, rx) = mpsc::channel();
            readback.map_async(wgpu::MapMode::Read, .., move |result| {
                // The receiver outlives the wait below; a failed send cannot happen.
                let _ = tx.send(result);
            });
            rx
        });
        // the next block's first submission, encoded while this block runs
        let next_first = self.encode(gpu, kernel, &plan, chunks[0].clone());
        self.ahead = Some((iterations, next_first));
        gpu.wait()?;
        let wall_s = start.elapsed().as_secs_f64();
        let device_s = match (mapped, &self.readback) {
            (Some(rx), Some(readback)) => {
                match rx.recv() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        return Err(BackendError::Device(format!("mapping timestamps: {e}")))
                    }
                    Err(_) => {
                        return Err(BackendError::Device(
                            "mapping timestamps: no answer from the device".to_owned(),
                        ))
                    }
                }
                let raw = readback
                    .get_mapped_range(..)
                    .map_err(|e| BackendError::Device(format!("reading timestamps: {e:?}")))?
                    .to_vec();
                readback.unmap();
                gpu.seconds_of_pass_timestamps(&raw, plan.len() as u32)
            }
            _ => None,
        };
        Ok(RunTiming { wall_s, device_s })
    }
}

/// What one dispatch needs: the pipeline, its bindings and its grid.
pub(crate) struct Dispatch<'a> {
    pub pipeline: &'a wgpu::ComputePipeline,
    pub bind_group: &'a wgpu::BindGroup,
    pub workgroups: [u32; 3],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_spread_over_its_passes() {
        assert_eq!(pass_plan(3), vec![1, 1, 1]);
        let p = pass_plan(130);
        assert_eq!(p.len(), 4);
        assert_eq!(p.iter().sum::<u64>(), 130);
        assert_eq!((p[0], p[3]), (33, 32));
    }
}
