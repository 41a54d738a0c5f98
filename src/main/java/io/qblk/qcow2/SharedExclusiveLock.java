package io.qblk.qcow2;

import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The image's "exclusive" lock: taken shared by every data request and flush, exclusively by check
 * and close. Shared holders count themselves on per-thread padded stripes (the stripe of the thread
 * id), so 32 concurrent requests on 2 CPUs do not bounce one lock word between the CPUs as a
 * ReentrantReadWriteLock does (two CASes plus its reader bookkeeping per request).
 *
 * <p>Protocol: an exclusive locker takes {@code gate}, raises {@code wanted}, then waits until every
 * stripe is 0. A shared locker increments its stripe, then reads {@code wanted}: if it is down the
 * lock is held (both are volatile, so either the exclusive locker sees the increment or the shared
 * locker sees the flag); if it is up, it undoes the increment and waits on {@code gate}. A thread
 * holding the lock exclusively may take it again, shared (close flushes) or exclusively; taking it shared twice on
 * one thread while an exclusive locker waits would deadlock, and no engine path does that.
 */
final class SharedExclusiveLock {
    private static final int STRIPES = 64;
    private static final int PAD = 16; // longs per stripe: 128 bytes
    private final AtomicLongArray shared = new AtomicLongArray(STRIPES * PAD);
    private final ReentrantLock gate = new ReentrantLock();
    private volatile boolean wanted;
    private volatile Thread owner;
    private int holds; // exclusive re-entries, touched by the owner only

    private static int stripe() {
        long id = Thread.currentThread().threadId();
        return (int) ((id * 0x9E3779B97F4A7C15L) >>> 58) * PAD;
    }

    void lockShared() {
        if (owner == Thread.currentThread()) return;
        while (tryLockShared() < 0) {
            gate.lock(); // parks until the exclusive holder is done
            gate.unlock();
        }
    }

    /**
     * Takes the lock shared without waiting, for a hold that another thread ends: the stripe to pass
     * to {@link #unlockShared(int)}, or -1 when an exclusive locker holds or wants the lock (or is
     * this thread, whose shared holds are not counted).
     */
    int tryLockShared() {
        if (owner == Thread.currentThread()) return -1;
        int s = stripe();
        shared.getAndIncrement(s);
        if (!wanted) return s;
        shared.getAndDecrement(s);
        return -1;
    }

    /** Ends, from any thread, a shared hold taken by {@link #tryLockShared()}. */
    void unlockShared(int stripe) {
        shared.getAndDecrement(stripe);
    }

    void unlockShared() {
        if (owner == Thread.currentThread()) return;
        unlockShared(stripe());
    }

    void lockExclusive() {
        if (owner == Thread.currentThread()) {
            holds++;
            return;
        }
        gate.lock();
        wanted = true;
        owner = Thread.currentThread();
        long spins = 0;
        for (int s = 0; s < STRIPES * PAD; s += PAD) {
            while (shared.get(s) != 0) {
                if (++spins < 100) Thread.onSpinWait();
                else LockSupport.parkNanos(50_000);
            }
        }
    }

    void unlockExclusive() {
        if (owner != Thread.currentThread()) throw new IllegalMonitorStateException("not the exclusive holder");
        if (holds > 0) {
            holds--;
            return;
        }
        owner = null;
        wanted = false;
        gate.unlock();
    }
}
