package io.qblk.io;

/**
 * A read that its caller submits itself: "read {@code length} bytes of descriptor {@link #fd()} at
 * {@link #fileOffset()} into the request's buffer, then call {@link #release()}". A ublk tag asks its
 * target for one ({@link io.qblk.target.BlockTarget#planRead}) and links the read to its
 * COMMIT_AND_FETCH in one submission, so the tag's thread is not woken between the two: the read's
 * completion runs {@link #release()} on the ring thread and the next request wakes the tag.
 *
 * <p>Whoever filled the plan holds what keeps the mapping valid (for qcow2: the image's shared lock
 * and an I/O epoch, rule R5) until {@link #release()}, which must be called exactly once after the
 * read has completed or failed, from any thread. One object per tag, reused: no allocation per
 * request.
 */
public final class ReadPlan {
    /** Ends the holds of a filled plan (called once per plan, from any thread). */
    public interface Holder {
        void release(long token);
    }

    private int fd = -1;
    private long fileOffset;
    private Holder holder;
    private long token;

    /** Fills the plan: read {@code fd} at {@code fileOffset}, then {@code holder.release(token)} (holder may be null). */
    public void set(int fd, long fileOffset, Holder holder, long token) {
        this.fd = fd;
        this.fileOffset = fileOffset;
        this.holder = holder;
        this.token = token;
    }

    public int fd() {
        return fd;
    }

    public long fileOffset() {
        return fileOffset;
    }

    /** Ends the plan's holds; a second call does nothing. */
    public void release() {
        Holder h = holder;
        holder = null;
        fd = -1;
        if (h != null) h.release(token);
    }
}
