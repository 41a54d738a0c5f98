package io.qblk.qcow2;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.LockSupport;

/**
 * Grace periods for freed host clusters: a data read or write looks up its host cluster inside
 * {@link #enter()}/{@link #exit(int)}; {@link #synchronize()} returns once every I/O that entered
 * before the call has left, so a cluster freed before it can no longer be touched by a stale mapping
 * and may be reused. Callers of synchronize are serialized by the caller (the flush lock).
 */
final class IoEpochs {
    private final AtomicLong epoch = new AtomicLong();
    private final LongAdder[] active = {new LongAdder(), new LongAdder()};

    int enter() {
        while (true) {
            long e = epoch.get();
            int slot = (int) (e & 1);
            active[slot].increment();
            if (epoch.get() == e) return slot;
            active[slot].decrement();
        }
    }

    void exit(int slot) {
        active[slot].decrement();
    }

    void synchronize() {
        long e = epoch.getAndIncrement();
        LongAdder old = active[(int) (e & 1)];
        long spins = 0;
        while (old.sum() != 0) {
            if (++spins < 100) Thread.onSpinWait();
            else LockSupport.parkNanos(20_000);
        }
    }
}
