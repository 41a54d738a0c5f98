package io.qblk.ublk;

import io.qblk.target.BlockTarget;
import java.io.IOException;
import java.io.PrintStream;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Foreground export of one target over ublk, shared by {@code qblk export --ublk} and
 * {@code qblk ublk export|recover}: prints /dev/ublkbN, serves until SIGTERM/SIGINT (or until the
 * device is deleted by someone else), then stops the device and flushes and closes the target
 * (for qcow2 that clears the dirty bit).
 */
public final class UblkExport {
    private UblkExport() {}

    /** Serves a new device; returns the process exit code. */
    public static int serve(BlockTarget target, UblkServer.Options options, PrintStream out) throws IOException {
        UblkServer server;
        try {
            server = UblkServer.start(target, options);
        } catch (UblkException e) {
            target.close();
            throw e;
        }
        return run(server, target, out);
    }

    /** Re-attaches to device {@code devId} (after kill -9 of its server) and serves it. */
    public static int recover(int devId, BlockTarget target, PrintStream out) throws IOException {
        UblkServer server;
        try {
            server = UblkServer.recover(devId, target);
        } catch (UblkException e) {
            target.close();
            throw e;
        }
        return run(server, target, out);
    }

    private static int run(UblkServer server, BlockTarget target, PrintStream out) throws IOException {
        out.println(server.blockDevice());
        out.flush();
        System.err.println("qblk: " + server.blockDevice() + ": " + (server.unprivileged() ? "unprivileged device, " : "")
                + (server.ioctlEncoding() ? "ioctl-encoded" : "legacy") + " ublk opcodes; tag threads " + (server.carried() ? "carried by their queue's ring thread"
                : "on the default scheduler" + (io.qblk.uring.VirtualCarrier.available() ? "" : " (" + io.qblk.uring.VirtualCarrier.unavailableReason() + ")"))
                + "; reads " + (UblkQueue.LINKED_READS ? "linked to their commit" : "committed separately (QBLK_UBLK_LINKED_READS=0)")
                + ", writes " + (UblkQueue.LINKED_WRITES ? "linked to their commit (QBLK_UBLK_LINKED_WRITES=1)" : "committed separately")
                + "; ring task-run " + String.valueOf(server.taskRun()).toLowerCase(java.util.Locale.ROOT));
        AtomicBoolean shuttingDown = new AtomicBoolean();
        CountDownLatch cleaned = new CountDownLatch(1);
        Thread hook = new Thread(() -> {
            shuttingDown.set(true);
            shutdown(server, target);
            cleaned.countDown();
        }, "ublk-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            server.awaitTermination();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (shuttingDown.get()) { // SIGTERM: the hook does the work; the JVM waits for it
            try {
                cleaned.await();
            } catch (InterruptedException ignored) {
                Thread.currentThread().interrupt();
            }
            return 143;
        }
        try {
            Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException ignored) {
            // shutdown began meanwhile
        }
        shutdown(server, target);
        System.err.println("qblk: ublk device " + server.devId() + " was stopped from outside");
        return 0;
    }

    private static final Object SHUTDOWN_LOCK = new Object();

    private static void shutdown(UblkServer server, BlockTarget target) {
        synchronized (SHUTDOWN_LOCK) {
            try {
                server.stop();
            } catch (IOException e) {
                System.err.println("qblk: stopping ublk device " + server.devId() + ": " + e.getMessage());
            }
            System.err.println("qblk: ublk device " + server.devId() + " " + server.servedSummary());
            if (target instanceof io.qblk.target.Qcow2Target q) System.err.println("qblk: qcow2: " + q.image().stats().summary());
            try {
                target.flush();
            } catch (IOException e) {
                System.err.println("qblk: flush failed: " + e.getMessage());
            }
            try {
                target.close();
            } catch (IOException e) {
                System.err.println("qblk: close failed: " + e.getMessage());
            }
        }
    }
}
