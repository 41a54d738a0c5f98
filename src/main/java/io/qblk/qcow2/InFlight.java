package io.qblk.qcow2;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.util.concurrent.CountDownLatch;

/** An allocating write of one guest cluster in progress; others that touch the cluster wait for it. */
final class InFlight {
    private final CountDownLatch done = new CountDownLatch(1);

    void finish() {
        done.countDown();
    }

    void await() throws IOException {
        try {
            done.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted waiting for a concurrent allocation");
        }
    }
}
