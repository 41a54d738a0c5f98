package io.qblk.io;

/**
 * A read or write that its caller submits itself: "read (write) {@code length} bytes of descriptor
 * {@link #fd()} at {@link #fileOffset()} into (from) the request's buffer, then call
 * {@link #release()}". A ublk tag asks its target for one ({@link io.qblk.target.BlockTarget#planRead},
 * {@link io.qblk.target.BlockTarget#planWrite}) and links the I/O to its COMMIT_AND_FETCH in one
 * submission, so the tag's thread is not woken between the two: the I/O's completion runs
 * {@link #release()} on the ring thread and the next request wakes the tag.
 *
 * <p>Whoever filled the plan holds what keeps the mapping valid (for qcow2: the image's shared lock
 * and an I/O epoch, rule R5; for a write also its count of planned writes in flight, W2) until
 * {@link #release()}, which must be called exactly once after the I/O has completed or failed, from
 * any thread. One object per tag, reused: no allocation per request.
 */
public final class FilePlan {
    /** Ends the holds of a filled plan (called once per plan, from any thread). */
    public interface Holder {
        void release(long token);
    }

    private IoBackend file;
    private int fd = -1;
    private long fileOffset;
    private Holder holder, outer;
    private long token, outerToken;

    /**
     * Fills the plan: read or write {@code fd} (the descriptor {@code file} gave: {@link IoBackend#plainFd})
     * at {@code fileOffset}, then {@code holder.release(token)} (holder may be null).
     */
    public void set(IoBackend file, int fd, long fileOffset, Holder holder, long token) {
        this.file = file;
        this.fd = fd;
        this.fileOffset = fileOffset;
        this.holder = holder;
        this.token = token;
    }

    /**
     * Adds a second hold to a filled plan, ended after the first one by {@link #release()}: a
     * decorator of the target that filled it (the service's metering) counts the request as in
     * progress until the I/O is done.
     */
    public void holdAlso(Holder outer, long outerToken) {
        this.outer = outer;
        this.outerToken = outerToken;
    }

    public int fd() {
        return fd;
    }

    /**
     * The backend whose descriptor {@link #fd()} is: a caller that cannot submit to a descriptor (the
     * crash-state explorer) does the same transfer through it.
     */
    public IoBackend file() {
        return file;
    }

    public long fileOffset() {
        return fileOffset;
    }

    /** Ends the plan's holds, the filler's first; a second call does nothing. */
    public void release() {
        Holder h = holder, o = outer;
        holder = null;
        outer = null;
        file = null;
        fd = -1;
        try {
            if (h != null) h.release(token);
        } finally {
            if (o != null) o.release(outerToken);
        }
    }
}
