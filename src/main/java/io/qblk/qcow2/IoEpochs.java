package io.qblk.qcow2;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.LockSupport;

/**
 * Grace periods for freed host clusters: a data read or write looks up its host cluster inside
 * {@link #enter()}/{@link #exit(int)}; {@link #synchronize()} returns once every I/O that entered
 * before the call has left, so a cluster freed before it can no longer be touched by a stale mapping
 * and may be reused. Callers of synchronize are serialized by the caller (the flush lock).
 *
 * <p>Each epoch parity counts the threads inside on {@value #STRIPES} padded stripes; a thread
 * always uses the stripe of its thread id, for enter and exit alike. So every stripe's value is at
 * least the number of threads inside that counted on it (a thread that backs off after the epoch
 * changed only adds +1 then -1 on its own stripe), and "every stripe of the old parity is 0" proves
 * that no I/O of the old epoch is left. (A LongAdder cannot give that proof: its increment and
 * decrement may land on different cells, so a racing sum can miss a thread that is inside.) The
 * stripes also keep 32 concurrent requests from bouncing one shared cache line between CPUs.
 */
final class IoEpochs {
    static final int STRIPES = 64;
    private static final int PAD = 16; // longs per stripe: 128 bytes, two cache lines
    private final AtomicLong epoch = new AtomicLong();
    private final AtomicLongArray[] active = {new AtomicLongArray(STRIPES * PAD), new AtomicLongArray(STRIPES * PAD)};

    static int stripe() {
        long id = Thread.currentThread().threadId();
        return (int) ((id * 0x9E3779B97F4A7C15L) >>> 58) * PAD; // top 6 bits: 0..63
    }

    int enter() {
        return enter(stripe());
    }

    /** {@link #enter()} for a caller that already holds this thread's {@link #stripe()}. */
    int enter(int s) {
        while (true) {
            long e = epoch.get();
            int slot = (int) (e & 1);
            active[slot].getAndIncrement(s);
            if (epoch.get() == e) return slot;
            active[slot].getAndDecrement(s);
        }
    }

    /** Leaves the section entered with {@link #enter()} on this same thread. */
    void exit(int slot) {
        exit(slot, stripe());
    }

    /**
     * Leaves, from any thread, a section that thread {@code stripe} ({@link #stripe()} of the thread
     * that entered) entered: the counted stripe is the one decremented, so the proof above holds. For a
     * read whose completion arrives on the ring thread ({@link ClusterReader#planRead}).
     */
    void exit(int slot, int stripe) {
        active[slot].getAndDecrement(stripe);
    }

    /**
     * A planned I/O's token: {@code held} (the caller's own bits) above 16 bits, then the section's
     * stripe and slot, so that {@link #exitPlanned} can leave it from any thread.
     */
    static long plannedToken(long held, int stripe, int slot) {
        return held << 16 | (long) stripe << 1 | slot;
    }

    /** Leaves the section of a {@link #plannedToken}, from any thread. */
    void exitPlanned(long token) {
        exit((int) (token & 1), (int) (token & 0xffff) >>> 1);
    }

    void synchronize() {
        long e = epoch.getAndIncrement();
        AtomicLongArray old = active[(int) (e & 1)];
        long spins = 0;
        for (int s = 0; s < STRIPES * PAD; s += PAD) {
            while (old.get(s) != 0) {
                if (++spins < 100) Thread.onSpinWait();
                else LockSupport.parkNanos(20_000);
            }
        }
    }
}
