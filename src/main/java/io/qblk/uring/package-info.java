/**
 * io_uring through Panama FFM only (no JNI, no native library): {@link io.qblk.uring.IoUring} is one
 * ring, {@link io.qblk.uring.RingThread} the platform thread that owns it and serves submissions from
 * any number of (virtual) threads in batches, {@link io.qblk.uring.UringOp} /
 * {@link io.qblk.uring.UringRequest} the operations handed to it, and
 * {@link io.qblk.uring.UringFileBackend} the {@link io.qblk.io.IoBackend} on top. See docs/uring.md.
 */
package io.qblk.uring;
