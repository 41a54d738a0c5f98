package io.qblk.nbd;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.BooleanSupplier;

/**
 * The server-wide budget for request and reply data held in memory by in-flight requests, with a
 * per-connection share. A connection's reader reserves a request's bytes before reading its
 * payload or starting it, and blocks (so the socket is not read further) while either limit would
 * be exceeded; the bytes come back once the reply has been written. One client that pipelines
 * large READs and never reads the replies holds at most its share, so others keep being served.
 */
final class ByteBudget {
    private final long limit;
    private final long perConnection;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition released = lock.newCondition();
    private long used;

    /** One connection's holding. */
    static final class Account {
        private long held;
    }

    ByteBudget(long limit, long perConnection) {
        this.limit = limit;
        this.perConnection = perConnection;
    }

    /**
     * Reserves {@code n} bytes for {@code a}, waiting while they do not fit. A reservation always
     * fits when the account (or the whole budget) holds nothing, so a single request never waits
     * forever. Returns false, reserving nothing, once {@code cancelled} says so.
     */
    boolean acquire(Account a, long n, BooleanSupplier cancelled) throws InterruptedException {
        if (n <= 0) return true;
        lock.lock();
        try {
            while (!fits(a, n)) {
                if (cancelled.getAsBoolean()) return false;
                released.await(100, TimeUnit.MILLISECONDS);
            }
            a.held += n;
            used += n;
            return true;
        } finally {
            lock.unlock();
        }
    }

    private boolean fits(Account a, long n) {
        boolean connectionOk = a.held == 0 || a.held + n <= perConnection;
        boolean globalOk = used == 0 || used + n <= limit;
        return connectionOk && globalOk;
    }

    void release(Account a, long n) {
        if (n <= 0) return;
        lock.lock();
        try {
            a.held -= n;
            used -= n;
            released.signalAll();
        } finally {
            lock.unlock();
        }
    }

    long used() {
        lock.lock();
        try {
            return used;
        } finally {
            lock.unlock();
        }
    }

    long limit() { return limit; }

    long perConnection() { return perConnection; }
}
