package io.qblk.qcow2;

import static org.junit.jupiter.api.Assertions.*;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class IoEpochsTest {
    /** A section entered on one thread and left on another with the entering thread's stripe (a planned read's release). */
    @Test
    void aSectionLeftFromAnotherThreadEndsTheGracePeriod() throws Exception {
        IoEpochs ep = new IoEpochs();
        int[] entered = new int[2];
        Thread a = Thread.ofVirtual().start(() -> {
            entered[1] = IoEpochs.stripe();
            entered[0] = ep.enter();
        });
        a.join();
        CountDownLatch synced = new CountDownLatch(1);
        Thread s = Thread.ofVirtual().start(() -> {
            ep.synchronize();
            synced.countDown();
        });
        assertFalse(synced.await(200, TimeUnit.MILLISECONDS), "synchronize returned while the section is held");
        Thread.ofPlatform().start(() -> ep.exit(entered[0], entered[1])).join();
        assertTrue(synced.await(5, TimeUnit.SECONDS), "synchronize did not return after the other thread left the section");
        s.join();
    }

    @Test
    void synchronizeWaitsForEarlierIoOnlyAndNeverReturnsEarlyUnderChurn() throws Exception {
        IoEpochs ep = new IoEpochs();
        CountDownLatch inside = new CountDownLatch(1), leave = new CountDownLatch(1);
        Thread a = Thread.ofVirtual().start(() -> {
            int slot = ep.enter();
            inside.countDown();
            try {
                leave.await();
            } catch (InterruptedException e) {
                throw new RuntimeException(e);
            }
            ep.exit(slot);
        });
        inside.await();
        CountDownLatch synced = new CountDownLatch(1);
        Thread s = Thread.ofVirtual().start(() -> {
            ep.synchronize();
            synced.countDown();
        });
        assertFalse(synced.await(200, TimeUnit.MILLISECONDS), "synchronize returned while an earlier I/O is inside");
        // An I/O that starts now belongs to the new epoch: it must not hold synchronize up.
        int later = ep.enter();
        leave.countDown();
        assertTrue(synced.await(5, TimeUnit.SECONDS), "synchronize did not return after the earlier I/O left");
        ep.exit(later);
        a.join();
        s.join();

        // Churn: 16 threads enter and leave constantly; each synchronize must see "inside" flags of
        // I/O that entered before it drop to zero, never a thread still inside.
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong violations = new AtomicLong();
        int n = 16;
        long[] enteredAt = new long[n]; // epoch counter value when thread i entered, or -1
        AtomicLong syncs = new AtomicLong();
        Thread[] ts = new Thread[n];
        for (int i = 0; i < n; i++) {
            final int id = i;
            enteredAt[id] = -1;
            ts[i] = Thread.ofPlatform().start(() -> {
                while (!stop.get()) {
                    int slot = ep.enter();
                    synchronized (enteredAt) { enteredAt[id] = syncs.get(); }
                    Thread.onSpinWait();
                    synchronized (enteredAt) { enteredAt[id] = -1; }
                    ep.exit(slot);
                }
            });
        }
        long end = System.nanoTime() + 300_000_000L;
        while (System.nanoTime() < end) {
            long mine = syncs.incrementAndGet() - 1; // threads that recorded < mine+1 entered before this call
            ep.synchronize();
            synchronized (enteredAt) {
                for (long v : enteredAt) if (v >= 0 && v < mine) violations.incrementAndGet();
            }
        }
        stop.set(true);
        for (Thread t : ts) t.join();
        assertEquals(0, violations.get(), "an I/O from before synchronize() was still inside after it returned");
    }
}
