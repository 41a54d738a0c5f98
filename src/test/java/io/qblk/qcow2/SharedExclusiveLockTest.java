package io.qblk.qcow2;

import static org.junit.jupiter.api.Assertions.*;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class SharedExclusiveLockTest {
    @Test
    void exclusiveWaitsForSharedAndSharedWaitsForExclusive() throws Exception {
        SharedExclusiveLock l = new SharedExclusiveLock();
        CountDownLatch in = new CountDownLatch(1), out = new CountDownLatch(1);
        Thread reader = Thread.ofVirtual().start(() -> {
            l.lockShared();
            in.countDown();
            try {
                out.await();
            } catch (InterruptedException e) {
                throw new RuntimeException(e);
            }
            l.unlockShared();
        });
        in.await();
        CountDownLatch got = new CountDownLatch(1), release = new CountDownLatch(1);
        Thread writer = Thread.ofVirtual().start(() -> {
            l.lockExclusive();
            got.countDown();
            try {
                release.await();
            } catch (InterruptedException e) {
                throw new RuntimeException(e);
            }
            // The holder may take the lock again, shared and exclusively (close flushes under it).
            l.lockShared();
            l.unlockShared();
            l.lockExclusive();
            l.unlockExclusive();
            l.unlockExclusive();
        });
        assertFalse(got.await(200, TimeUnit.MILLISECONDS), "exclusive granted while a shared holder is inside");
        out.countDown();
        assertTrue(got.await(5, TimeUnit.SECONDS));
        CountDownLatch second = new CountDownLatch(1);
        Thread late = Thread.ofVirtual().start(() -> {
            l.lockShared();
            second.countDown();
            l.unlockShared();
        });
        assertFalse(second.await(200, TimeUnit.MILLISECONDS), "shared granted while exclusive is held");
        release.countDown();
        assertTrue(second.await(5, TimeUnit.SECONDS));
        for (Thread t : new Thread[] {reader, writer, late}) t.join();
        assertThrows(IllegalMonitorStateException.class, l::unlockExclusive);
    }

    @Test
    void neverSharedAndExclusiveAtOnceUnderChurn() throws Exception {
        SharedExclusiveLock l = new SharedExclusiveLock();
        AtomicInteger sharedInside = new AtomicInteger();
        AtomicBoolean exclusiveInside = new AtomicBoolean();
        AtomicLong violations = new AtomicLong(), sharedRounds = new AtomicLong();
        AtomicBoolean stop = new AtomicBoolean();
        Thread[] ts = new Thread[32];
        for (int i = 0; i < ts.length; i++) {
            ts[i] = Thread.ofVirtual().start(() -> {
                while (!stop.get()) {
                    l.lockShared();
                    sharedInside.incrementAndGet();
                    if (exclusiveInside.get()) violations.incrementAndGet();
                    Thread.yield();
                    sharedInside.decrementAndGet();
                    l.unlockShared();
                    sharedRounds.incrementAndGet();
                }
            });
        }
        long end = System.nanoTime() + 300_000_000L;
        int exclusives = 0;
        while (System.nanoTime() < end) {
            l.lockExclusive();
            exclusiveInside.set(true);
            if (sharedInside.get() != 0) violations.incrementAndGet();
            Thread.onSpinWait();
            exclusiveInside.set(false);
            l.unlockExclusive();
            exclusives++;
            Thread.sleep(1);
        }
        stop.set(true);
        for (Thread t : ts) t.join();
        assertEquals(0, violations.get());
        assertTrue(exclusives > 10 && sharedRounds.get() > 1000, exclusives + " exclusive, " + sharedRounds + " shared rounds");
    }
}
