package io.qblk.uring;

import java.lang.foreign.MemorySegment;

/**
 * The io_uring the current thread should submit its file I/O to, bound for the extent of a call with
 * a {@link ScopedValue}. A ublk queue binds one per tag thread (its own {@link RingThread} and the
 * tag's I/O buffer), so a {@link UringFileBackend} opened with {@link UringFileBackend#openForCallerRing}
 * sends the target's data and metadata I/O through the very ring that carries the queue's ublk
 * commands, whichever queue the calling tag belongs to.
 *
 * <pre>
 *  tag thread of queue 0 ─ CallerRing.run(q0 binding) ─ target.read ─ backend ─▶ ring of queue 0
 *  tag thread of queue 1 ─ CallerRing.run(q1 binding) ─ target.read ─ backend ─▶ ring of queue 1
 *  anything else (shutdown flush, recovery, service) ── target.flush ─ backend ─▶ pread/pwrite/fdatasync
 * </pre>
 *
 * @param ring        the ring thread to submit to
 * @param fixedBuffer a buffer registered on {@code ring} as fixed buffer {@code fixedIndex}, or
 *                    {@link MemorySegment#NULL} when none is: I/O whose memory lies inside it goes out
 *                    as READ_FIXED / WRITE_FIXED (no page pinning per request)
 * @param fixedIndex  the registered buffer's index
 */
public record CallerRing(RingThread ring, MemorySegment fixedBuffer, int fixedIndex) {
    private static final ScopedValue<CallerRing> CURRENT = ScopedValue.newInstance();

    /** A binding without a registered buffer. */
    public CallerRing(RingThread ring) {
        this(ring, MemorySegment.NULL, -1);
    }

    /** The binding of the current thread, or null when none is bound (or its ring is closed). */
    public static CallerRing current() {
        if (!CURRENT.isBound()) return null;
        CallerRing c = CURRENT.get();
        return c.ring.isClosed() ? null : c;
    }

    /** Runs {@code body} with this binding visible to {@link #current()} (also in code it calls). */
    public void run(Runnable body) {
        ScopedValue.where(CURRENT, this).run(body);
    }

    /** The fixed buffer index to use for I/O on {@code buf}, or -1 when buf is not inside the registered buffer. */
    int fixedIndexFor(MemorySegment buf) {
        if (fixedIndex < 0) return -1;
        long base = fixedBuffer.address(), a = buf.address();
        return a >= base && a + buf.byteSize() <= base + fixedBuffer.byteSize() ? fixedIndex : -1;
    }
}
