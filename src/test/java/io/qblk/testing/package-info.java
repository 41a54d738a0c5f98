/**
 * The tests' one storage fake: an in-memory {@link io.qblk.testing.MemoryBackend} (optionally a
 * copy-on-write view of a shared image) and two wrappers that compose over any
 * {@link io.qblk.io.IoBackend}: {@link io.qblk.testing.FaultyBackend} (errno injection: while set,
 * or on the Nth call of a kind) and {@link io.qblk.testing.RecordingBackend} (the write/barrier log
 * of {@link io.qblk.testing.IoEvent}s). {@link io.qblk.testing.PowerCut} folds such a log into the
 * images a power loss may leave. The crash-state explorer, the I/O error injector, the hostile image
 * tests, the engine's crash tests, the target contract tests and the NBD tests all build on these.
 */
package io.qblk.testing;
