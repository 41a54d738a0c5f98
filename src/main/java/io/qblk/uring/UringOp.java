package io.qblk.uring;

import java.io.IOException;

/**
 * One operation handed to a {@link RingThread}: it fills its SQE(s) on the owner thread and receives
 * its completion(s) there. Each SQE carries its own user_data, which the ring thread maps back to the
 * operation and the SQE's index, so every submission brings its own completion handler (this is how a
 * ublk queue routes its URING_CMD completions through the same owner loop as file I/O).
 *
 * <p>Contract: {@link #prepare} and {@link #complete} run on the owner thread, must be quick and must
 * not block. {@link #complete} may submit further operations (that never blocks on the owner thread)
 * and may even call the blocking {@link RingThread#execute}; {@link #prepare} must only fill its SQE.
 * An operation object may be submitted again after its last completion arrived, not before. Buffers
 * an operation names must stay alive until its completion (or failure) has been delivered.
 */
public abstract class UringOp {
    /** Link in the ring thread's lock-free submission stack. */
    UringOp next;

    /**
     * How many SQEs this operation occupies (default 1). They are placed consecutively in one
     * submission batch, so an operation can be a linked chain (set {@link Sqe#IO_LINK} on all but the
     * last). Zero means "no SQE": {@link #prepare} is called once with a null SQE, as a task run on the
     * owner thread.
     */
    protected int sqeCount() {
        return 1;
    }

    /**
     * Fills SQE {@code index} (0-based) of this operation. The entry is zeroed; the ring thread sets
     * user_data afterwards, so don't rely on it.
     */
    protected abstract void prepare(Sqe sqe, int index);

    /**
     * The completion of SQE {@code index}: {@code res} is the kernel's result (a negative errno on
     * failure), {@code flags} the CQE flags; {@code big0}/{@code big1} the extra words of a CQE32 ring.
     * When flags contain {@link IoUring#CQE_F_MORE} more completions for the same SQE follow.
     */
    protected abstract void complete(int index, int res, int flags, long big0, long big1);

    /**
     * The operation will not (or not fully) complete: the ring was closed before it was submitted, or
     * it was still in flight when the close timeout ran out. Called at most once, on any thread.
     */
    protected abstract void fail(IOException cause);
}
