//! The open device and the few things every kernel does with it: compile a pipeline,
//! move tensors in and out, and run dispatches back-to-back under timestamp queries.
//! wgpu reports most failures asynchronously (by default with a panic); here they are
//! caught and turned into `BackendError`s, because a measurement tool must say what
//! failed, not abort.

use joulebench_core::{BackendError, Precision, RunTiming};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// At most this many timed passes per `run`: each has its own begin/end timestamps,
/// and a query set holds at most `wgpu::QUERY_SET_MAX_QUERIES`.
const MAX_TIMED_PASSES: u64 = 64;

/// Buffer sizes are rounded up to this, so f16 tensors of odd length can be copied
/// (copies move multiples of 4 bytes) and bound as vec4 arrays.
const BUFFER_ALIGN_BYTES: u64 = 16;

/// `JOULEBENCH_WGPU_CHECKS=full` builds every kernel with all of wgpu's runtime checks,
/// to measure what leaving some out gains.
pub const FULL_CHECKS_ENV: &str = "JOULEBENCH_WGPU_CHECKS";

/// How much a shader module is checked at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checks {
    /// Bounds checks, loop bounding and integer-division guards: any shader is safe.
    Full,
    /// Bounds checks only: for kernels whose loops all terminate and whose integer
    /// divisions are by non-zero constants.
    LoopsTrusted,
    /// Nothing checked: for kernels proven in bounds for the dispatch they get.
    Trusted,
}

pub(crate) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// Errors wgpu raised outside an error scope, and device loss, in arrival order.
    errors: Arc<Mutex<Vec<String>>>,
    pub timestamps: bool,
    pub timestamp_period_ns: f32,
}

fn lock(errors: &Mutex<Vec<String>>) -> std::sync::MutexGuard<'_, Vec<String>> {
    // A panic while holding this lock cannot leave the Vec half-written.
    errors.lock().unwrap_or_else(|p| p.into_inner())
}

impl Gpu {
    /// Open a device on `adapter`. With `matrix_units`, the device also gets
    /// subgroups and wgpu's experimental cooperative matrices (for wgsl-coop only:
    /// experimental features stay off the device the other kernels run on, so that
    /// their builds do not change with them).
    pub fn open(adapter: &wgpu::Adapter, matrix_units: bool) -> Result<Gpu, BackendError> {
        let mut wanted = wgpu::Features::SHADER_F16
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        if matrix_units {
            wanted |= wgpu::Features::SUBGROUP | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        let features = adapter.features() & wanted;
        let desc = wgpu::DeviceDescriptor {
            label: Some("joulebench"),
            required_features: features,
            // The adapter's own limits, not WebGPU's defaults: bigger buffers and more
            // workgroup memory decide which shapes and tile variants fit.
            required_limits: adapter.limits(),
            experimental_features: if matrix_units {
                // SAFETY: wgpu asks users of experimental features to accept that
                // their implementation may have bugs; wgsl-coop is the only kernel
                // built on this device, and every point is checked against the
                // reference before it is measured.
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            } else {
                wgpu::ExperimentalFeatures::disabled()
            },
            ..Default::default()
        };
        let (opened, _) =
            crate::quiet::quietly(|| pollster::block_on(adapter.request_device(&desc)));
        let (device, queue) = opened.map_err(|e| {
            BackendError::Unavailable(format!(
                "could not open a device on '{}': {e}",
                adapter.get_info().name
            ))
        })?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&errors);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&sink).push(e.to_string());
        }));
        let sink = Arc::clone(&errors);
        device.set_device_lost_callback(move |reason, message| {
            lock(&sink).push(format!("device lost ({reason:?}): {message}"));
        });
        let timestamps = features.contains(wgpu::Features::TIMESTAMP_QUERY);
        let timestamp_period_ns = queue.get_timestamp_period();
        Ok(Gpu {
            device,
            queue,
            errors,
            timestamps: timestamps && timestamp_period_ns > 0.0,
            timestamp_period_ns,
        })
    }

    /// Fail with every error wgpu raised since the last check.
    pub fn check(&self, context: &str) -> Result<(), BackendError> {
        let mut errors = lock(&self.errors);
        if errors.is_empty() {
            return Ok(());
        }
        let all = std::mem::take(&mut *errors).join("; ");
        Err(BackendError::Device(format!("{context}: {all}")))
    }

    /// Block until all submitted work is done.
    pub fn wait(&self) -> Result<(), BackendError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| BackendError::Device(format!("waiting for the queue: {e}")))?;
        self.check("queue")
    }

    /// Compile `wgsl` into a pipeline with entry point `main`, with the runtime checks
    /// `checks` asks for.
    ///
    /// # Safety
    /// With [`Checks::LoopsTrusted`], every loop of the shader must terminate and no
    /// integer division may divide by zero or overflow. With [`Checks::Trusted`], in
    /// addition every index the shader computes must be in bounds for every dispatch
    /// it will ever run.
    pub unsafe fn pipeline(
        &self,
        label: &str,
        wgsl: &str,
        checks: Checks,
    ) -> Result<wgpu::ComputePipeline, BackendError> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(wgsl.into()),
        };
        let checks = if std::env::var(FULL_CHECKS_ENV).as_deref() == Ok("full") {
            Checks::Full
        } else {
            checks
        };
        let module = match checks {
            Checks::Full => self.device.create_shader_module(desc),
            Checks::LoopsTrusted | Checks::Trusted => {
                // The loop counter naga adds to every loop (so that a driver cannot
                // assume an infinite loop away) also hides the trip count from the
                // driver's compiler, which then cannot unroll the loops that keep a
                // kernel's register blocks in registers.
                let runtime = wgpu::ShaderRuntimeChecks {
                    bounds_checks: checks == Checks::LoopsTrusted,
                    force_loop_bounding: false,
                    int_div_checks: false,
                    ..wgpu::ShaderRuntimeChecks::checked()
                };
                // SAFETY: the caller guarantees what `checks` leaves unchecked.
                unsafe { self.device.create_shader_module_trusted(desc, runtime) }
            }
        };
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(BackendError::Compile(format!("{label}: {e}")));
        }
        self.check(label)?;
        Ok(pipeline)
    }

    /// A storage buffer of `bytes` (rounded up) that can also be written and read back.
    pub fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer, BackendError> {
        self.buffer(
            label,
            round_up(bytes),
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
        )
    }

    pub fn uniform(&self, label: &str, contents: &[u8]) -> Result<wgpu::Buffer, BackendError> {
        let buffer = self.buffer(
            label,
            round_up(contents.len() as u64),
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        self.queue.write_buffer(&buffer, 0, contents);
        Ok(buffer)
    }

    pub(crate) fn buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer, BackendError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        });
        let invalid = pollster::block_on(invalid.pop());
        let oom = pollster::block_on(oom.pop());
        if let Some(e) = invalid.or(oom) {
            return Err(BackendError::DoesNotFit(format!(
                "buffer {label} of {size} bytes: {e}"
            )));
        }
        Ok(buffer)
    }

    /// Upload `values` to `buffer` in `precision`'s storage format.
    pub fn upload(&self, buffer: &wgpu::Buffer, values: &[f32], precision: Precision) {
        self.queue
            .write_buffer(buffer, 0, &to_device_bytes(values, precision));
    }

    /// Fill `buffer` with NaN, so that an element a kernel never writes is caught.
    pub fn poison(&self, buffer: &wgpu::Buffer, len: usize, precision: Precision) {
        self.upload(buffer, &vec![f32::NAN; len], precision);
    }

    /// Read the first `len` elements of `buffer` back as f32.
    pub fn download(
        &self,
        buffer: &wgpu::Buffer,
        len: usize,
        precision: Precision,
    ) -> Result<Vec<f32>, BackendError> {
        let bytes = self.read_bytes(buffer)?;
        let values = from_device_bytes(&bytes, precision);
        if values.len() < len {
            return Err(BackendError::Device(format!(
                "read back {} elements, expected {len}",
                values.len()
            )));
        }
        Ok(values[..len].to_vec())
    }

    fn read_bytes(&self, buffer: &wgpu::Buffer) -> Result<Vec<u8>, BackendError> {
        let size = buffer.size();
        let staging = self.buffer(
            "readback",
            size,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            // The receiver outlives the poll below; a failed send cannot happen.
            let _ = tx.send(result);
        });
        self.wait()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(BackendError::Device(format!("mapping readback: {e}"))),
            Err(_) => {
                return Err(BackendError::Device(
                    "mapping readback: no answer from the device".to_owned(),
                ))
            }
        }
        let bytes = staging
            .get_mapped_range(..)
            .map_err(|e| BackendError::Device(format!("reading readback: {e:?}")))?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }

    /// Run `iterations` dispatches of `pipeline` back-to-back and wait for them, the
    /// serial way (`crate::submit::Submission::Serial`): everything encoded first,
    /// one submission, then the timestamps resolved and read back in a second round
    /// trip. Device time is the sum over passes of end-minus-begin timestamps; wall
    /// time runs from the submission to the completed queue sync. The variant
    /// search times with it; measured points run pipelined.
    pub fn run(
        &self,
        pipeline: &wgpu::ComputePipeline,
        bind_group: &wgpu::BindGroup,
        workgroups: [u32; 3],
        iterations: u64,
    ) -> Result<RunTiming, BackendError> {
        if iterations == 0 {
            return Ok(RunTiming {
                wall_s: 0.0,
                device_s: self.timestamps.then_some(0.0),
            });
        }
        let passes = iterations.min(MAX_TIMED_PASSES);
        let query_set = self.timestamps.then(|| {
            self.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("pass timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * passes as u32,
            })
        });
        // Encoding happens before the clock starts: only execution is timed.
        let mut commands = Vec::with_capacity(passes as usize);
        for pass_index in 0..passes {
            let dispatches = iterations / passes + u64::from(pass_index < iterations % passes);
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("run") });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("run"),
                    timestamp_writes: query_set.as_ref().map(|query_set| {
                        wgpu::ComputePassTimestampWrites {
                            query_set,
                            beginning_of_pass_write_index: Some(2 * pass_index as u32),
                            end_of_pass_write_index: Some(2 * pass_index as u32 + 1),
                        }
                    }),
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, bind_group, &[]);
                let [x, y, z] = workgroups;
                for _ in 0..dispatches {
                    pass.dispatch_workgroups(x, y, z);
                }
            }
            commands.push(encoder.finish());
        }
        self.check("encoding")?;
        let start = Instant::now();
        self.queue.submit(commands);
        self.wait()?;
        let wall_s = start.elapsed().as_secs_f64();
        let device_s = match &query_set {
            Some(query_set) => self.pass_seconds(query_set, passes as u32)?,
            None => None,
        };
        Ok(RunTiming { wall_s, device_s })
    }

    /// Sum of (end − begin) over `passes` timestamp pairs, in seconds; `None` when a
    /// pair runs backwards (a driver that cannot be trusted for device time).
    fn pass_seconds(
        &self,
        query_set: &wgpu::QuerySet,
        passes: u32,
    ) -> Result<Option<f64>, BackendError> {
        let bytes = 2 * passes as u64 * wgpu::QUERY_SIZE as u64;
        let resolve = self.buffer(
            "timestamps",
            round_up(bytes),
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        )?;
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("resolve timestamps"),
            });
        encoder.resolve_query_set(query_set, 0..2 * passes, &resolve, 0);
        self.queue.submit([encoder.finish()]);
        let raw = self.read_bytes(&resolve)?;
        Ok(self.seconds_of_pass_timestamps(&raw, passes))
    }

    /// Sum of (end − begin) over the first `passes` timestamp pairs of `raw` (as
    /// resolved), in seconds; `None` when a pair runs backwards (a driver that cannot
    /// be trusted for device time).
    pub(crate) fn seconds_of_pass_timestamps(&self, raw: &[u8], passes: u32) -> Option<f64> {
        let ticks: Vec<u64> = raw
            .chunks_exact(8)
            .take(2 * passes as usize)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        let mut total_ticks = 0u64;
        for pair in ticks.chunks_exact(2) {
            total_ticks = total_ticks.saturating_add(pair[1].checked_sub(pair[0])?);
        }
        Some(total_ticks as f64 * f64::from(self.timestamp_period_ns) * 1e-9)
    }
}

fn round_up(bytes: u64) -> u64 {
    bytes.div_ceil(BUFFER_ALIGN_BYTES).max(1) * BUFFER_ALIGN_BYTES
}

/// Bytes of the device buffer holding `len` elements of `precision`, as allocated.
pub(crate) fn device_bytes(len: u64, precision: Precision) -> u64 {
    round_up(len.saturating_mul(element_bytes(precision)))
}

fn element_bytes(precision: Precision) -> u64 {
    match precision {
        Precision::F16 => 2,
        _ => 4,
    }
}

/// `values` in the storage format of `precision` (f16 or f32), zero-padded to the
/// buffer alignment. Values are expected to be already rounded to the precision.
pub(crate) fn to_device_bytes(values: &[f32], precision: Precision) -> Vec<u8> {
    let mut bytes: Vec<u8> = match precision {
        Precision::F16 => values
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|&x| x.to_le_bytes()).collect(),
    };
    bytes.resize(round_up(bytes.len() as u64) as usize, 0);
    bytes
}

pub(crate) fn from_device_bytes(bytes: &[u8], precision: Precision) -> Vec<f32> {
    match precision {
        Precision::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_bytes_round_trip_and_pad() {
        let values = [1.5f32, -2.0, 0.333_251_95];
        for p in [Precision::F32, Precision::F16] {
            let bytes = to_device_bytes(&values, p);
            assert_eq!(bytes.len() % BUFFER_ALIGN_BYTES as usize, 0);
            assert_eq!(bytes.len() as u64, device_bytes(3, p));
            let back = from_device_bytes(&bytes, p);
            assert_eq!(&back[..3], &values);
            assert!(back[3..].iter().all(|&x| x == 0.0));
        }
    }

    #[test]
    fn nan_survives_f16() {
        let bytes = to_device_bytes(&[f32::NAN], Precision::F16);
        assert!(from_device_bytes(&bytes, Precision::F16)[0].is_nan());
    }
}
