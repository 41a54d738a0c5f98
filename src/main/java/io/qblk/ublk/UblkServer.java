package io.qblk.ublk;

import io.qblk.io.Errno;
import io.qblk.io.LibC;
import io.qblk.target.BlockTarget;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Serves one {@link BlockTarget} as /dev/ublkbN: adds the device, sets its parameters, opens
 * /dev/ublkcN, starts one {@link UblkQueue} per hardware queue and then START_DEV (or, for
 * {@link #recover}, START/END_USER_RECOVERY on an existing device whose server died).
 *
 * <pre>
 *  start:   ADD_DEV ─► SET_PARAMS ─► open /dev/ublkcN ─► queues FETCH every tag ─► START_DEV (other thread)
 *  stop:    STOP_DEV (kernel aborts the fetches) ─► queues end ─► close /dev/ublkcN ─► DEL_DEV
 *  recover: START_USER_RECOVERY (retried while the kernel quiesces) ─► open ─► FETCH ─► END_USER_RECOVERY
 * </pre>
 */
public final class UblkServer {
    /** Defaults: 1 queue, depth 64, 512 KiB per request. */
    public record Options(int queues, int depth, int maxIoBytes, int devId) {
        public static Options defaults() {
            return new Options(1, 64, 512 * 1024, -1);
        }

        public Options withQueues(int q) { return new Options(q, depth, maxIoBytes, devId); }
        public Options withDepth(int d) { return new Options(queues, d, maxIoBytes, devId); }
        public Options withDevId(int id) { return new Options(queues, depth, maxIoBytes, id); }
    }

    private static final long START_TIMEOUT_MS = 60_000;

    private final UblkControl control;
    private final BlockTarget target;
    private final int devId;
    private UblkDeviceInfo info;
    private final List<UblkQueue> queues = new ArrayList<>();
    private int cdevFd = -1;
    private boolean stopped;
    private long[] servedAtClose = new long[0];
    private LinkedCounts linkedAtClose = new LinkedCounts(0, 0, 0);

    private UblkServer(UblkControl control, BlockTarget target, int devId) {
        this.control = control;
        this.target = target;
        this.devId = devId;
    }

    /** Checks queue count and depth against what this kernel accepts; one clear message otherwise. */
    public static void checkLimits(Options o) throws UblkException {
        int cpus = Runtime.getRuntime().availableProcessors();
        if (o.queues() < 1 || o.queues() > cpus)
            throw new UblkException("-q " + o.queues() + ": ublk allows 1 to " + cpus + " queues here (at most one per CPU)", Errno.EINVAL);
        if (o.depth() < 1 || o.depth() > UblkQueue.MAX_QUEUE_DEPTH)
            throw new UblkException("-d " + o.depth() + ": ublk queue depth must be 1 to " + UblkQueue.MAX_QUEUE_DEPTH, Errno.EINVAL);
        if (o.maxIoBytes() < 4096 || o.maxIoBytes() % 4096 != 0)
            throw new UblkException("max I/O size " + o.maxIoBytes() + " must be a positive multiple of 4096", Errno.EINVAL);
    }

    /** Creates and starts a new device for {@code target}. */
    public static UblkServer start(BlockTarget target, Options o) throws UblkException {
        checkLimits(o);
        UblkControl control = UblkControl.open();
        long flags = UblkControl.F_USER_RECOVERY | UblkControl.F_USER_RECOVERY_REISSUE
                | (control.ioctlEncoding() ? UblkControl.F_CMD_IOCTL_ENCODE : 0)
                | (UblkControl.UNPRIVILEGED ? UblkControl.F_UNPRIVILEGED_DEV : 0); // the kernel drops user recovery then
        UblkDeviceInfo granted;
        try {
            granted = control.addDevice(new UblkDeviceInfo(o.queues(), o.depth(), 0, o.maxIoBytes(), o.devId(), 0, flags));
        } catch (UblkException e) {
            control.close();
            throw e;
        }
        UblkServer s = new UblkServer(control, target, granted.devId());
        s.info = granted;
        try {
            if (granted.queues() != o.queues() || granted.queueDepth() != o.depth())
                throw new UblkException("kernel granted " + granted.queues() + " queue(s) of depth " + granted.queueDepth()
                        + ", asked for " + o.queues() + " of depth " + o.depth());
            // Unprivileged: every command after ADD_DEV is checked against our access to /dev/ublkcN,
            // which a udev rule gives us shortly after the node appears: open it (waiting for that) first.
            s.openCharDevice();
            control.setParams(s.devId, params(target, granted.maxIoBufBytes()));
            s.startQueues();
            s.runBlocking("START_DEV", () -> {
                try (UblkControl c = UblkControl.open()) {
                    c.startDevice(s.devId, UblkSyscalls.getpid());
                }
            });
            s.info = control.deviceInfo(s.devId);
            s.waitForNode(s.blockDevice());
            return s;
        } catch (UblkException | RuntimeException e) {
            s.abandon();
            throw e;
        }
    }

    /** Re-attaches to device {@code devId} after its server died (kill -9): same /dev/ublkbN. */
    public static UblkServer recover(int devId, BlockTarget target) throws UblkException {
        UblkControl control = UblkControl.open();
        UblkServer s = new UblkServer(control, target, devId);
        try {
            UblkDeviceInfo i = control.deviceInfo(devId);
            if ((i.flags() & UblkControl.F_USER_RECOVERY) == 0)
                throw new UblkException("ublk device " + devId + " was created without user recovery; delete it with qblk ublk del " + devId);
            if (i.state() == UblkDeviceInfo.STATE_LIVE && i.serverPid() > 0 && Files.exists(Path.of("/proc/" + i.serverPid())))
                throw new UblkException("ublk device " + devId + " is live, served by pid " + i.serverPid());
            long deadline = System.currentTimeMillis() + 30_000;
            while (true) { // the kernel quiesces a dead server's device within its 5 s monitor period
                int r = control.startRecoveryRaw(devId);
                if (r == 0) break;
                if (r != -Errno.EBUSY || System.currentTimeMillis() > deadline)
                    throw UblkException.fromErrno("ublk START_USER_RECOVERY (device " + devId + ", state " + i.stateName() + ")", -r);
                Thread.sleep(200);
            }
            s.info = control.deviceInfo(devId);
            s.openQueues();
            s.runBlocking("END_USER_RECOVERY", () -> {
                try (UblkControl c = UblkControl.open()) {
                    c.endRecovery(devId, UblkSyscalls.getpid());
                }
            });
            s.info = control.deviceInfo(devId);
            return s;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            s.closeQueues();
            control.close();
            throw new UblkException("interrupted while recovering ublk device " + devId);
        } catch (UblkException | RuntimeException e) {
            s.closeQueues();
            control.close();
            throw e;
        }
    }

    static UblkParams params(BlockTarget target, int maxIoBufBytes) {
        boolean isNull = target instanceof io.qblk.target.NullTarget;
        return new UblkParams(target.size(), 9, 12, maxIoBufBytes >>> 9, target.readOnly(), !isNull,
                !target.readOnly(), 4096);
    }

    private void openQueues() throws UblkException {
        openCharDevice();
        startQueues();
    }

    /**
     * Opens /dev/ublkcN read-write; for an unprivileged device waits up to 10 s for the udev rule
     * that gives the root-created node to its owner.
     */
    private void openCharDevice() throws UblkException {
        Path cdev = Path.of("/dev/ublkc" + devId);
        waitForNode(cdev);
        long deadline = System.currentTimeMillis() + 10_000;
        while ((cdevFd = LibC.open(cdev.toString(), LibC.O_RDWR | LibC.O_CLOEXEC, 0)) < 0) {
            int e = LibC.errno();
            // An unprivileged device's nodes are created root-owned; a udev rule gives them to their owner.
            if (e != Errno.EACCES || !UblkControl.UNPRIVILEGED || System.currentTimeMillis() > deadline) {
                if (e == Errno.EACCES && UblkControl.UNPRIVILEGED)
                    throw new UblkException("open " + cdev + ": permission denied (an unprivileged device needs a udev rule "
                            + "giving its owner /dev/ublkcN and /dev/ublkbN, see docs/ublk.md)", e);
                throw UblkException.fromErrno("open " + cdev, e);
            }
            try {
                Thread.sleep(50);
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
                throw new UblkException("interrupted waiting for access to " + cdev);
            }
        }
    }

    private void startQueues() throws UblkException {
        for (int q = 0; q < info.queues(); q++) {
            UblkQueue queue = new UblkQueue(q, info.queueDepth(), info.maxIoBufBytes(), info.flags(), cdevFd, target);
            queues.add(queue);
            queue.start();
        }
    }

    private interface Blocking {
        void run() throws UblkException;
    }

    /** Runs a command that blocks until every tag fetched, on its own thread, with a timeout. */
    private void runBlocking(String what, Blocking b) throws UblkException {
        AtomicReference<Throwable> err = new AtomicReference<>();
        Thread t = Thread.ofPlatform().name("ublk-" + what).daemon(true).start(() -> {
            try {
                b.run();
            } catch (Throwable e) {
                err.set(e);
            }
        });
        try {
            t.join(START_TIMEOUT_MS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (t.isAlive()) throw new UblkException("ublk " + what + " did not return within " + START_TIMEOUT_MS / 1000 + " s");
        Throwable e = err.get();
        if (e instanceof UblkException u) throw u;
        if (e != null) throw new UblkException("ublk " + what + ": " + e);
        for (UblkQueue q : queues) {
            if (q.failure() != null) throw new UblkException("ublk queue failed: " + q.failure().getMessage());
        }
    }

    private void waitForNode(Path p) throws UblkException {
        long deadline = System.currentTimeMillis() + 5000;
        while (!Files.exists(p)) {
            if (System.currentTimeMillis() > deadline) throw new UblkException(p + " did not appear");
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new UblkException("interrupted waiting for " + p);
            }
        }
    }

    public int devId() {
        return devId;
    }

    public Path blockDevice() {
        return Path.of("/dev/ublkb" + devId);
    }

    public UblkDeviceInfo info() {
        return info;
    }

    /** Blocks until every queue has ended (the device was stopped, e.g. by {@code qblk ublk del}). */
    public void awaitTermination() throws InterruptedException {
        List<UblkQueue> snapshot;
        synchronized (this) { // stop() clears the list meanwhile
            snapshot = List.copyOf(queues);
        }
        for (UblkQueue q : snapshot) q.join(Long.MAX_VALUE / 4);
    }

    /** STOP_DEV, waits for the queues, closes /dev/ublkcN, DEL_DEV. The target stays open. */
    public synchronized void stop() throws UblkException {
        if (stopped) return;
        stopped = true;
        UblkException first = null;
        try {
            control.stopDevice(devId);
        } catch (UblkException e) {
            if (e.errno() != Errno.ENODEV) first = e;
        }
        closeQueues();
        try {
            control.deleteDevice(devId);
        } catch (UblkException e) {
            if (first == null && e.errno() != Errno.ENODEV) first = e;
        }
        control.close();
        if (first != null) throw first;
    }

    /**
     * Requests completed by each hardware queue (index = queue id) since this server started; after
     * {@link #stop()} the counts at the time the queues closed.
     */
    public synchronized long[] servedRequestsPerQueue() {
        if (queues.isEmpty()) return servedAtClose.clone();
        long[] r = new long[queues.size()];
        for (UblkQueue q : queues) r[q.id()] = q.servedRequests();
        return r;
    }

    /**
     * Reads and writes served as one file read or write linked to their commit, and linked commits
     * the kernel refused and the queue sent again, summed over the queues (after {@link #stop()}: at
     * the time they closed).
     */
    public synchronized LinkedCounts linkedIo() {
        if (queues.isEmpty()) return linkedAtClose;
        long reads = 0, writes = 0, resent = 0;
        for (UblkQueue q : queues) {
            reads += q.linkedReads();
            writes += q.linkedWrites();
            resent += q.linkRetries();
        }
        return new LinkedCounts(reads, writes, resent);
    }

    /**
     * What the device served, for the line printed or logged when it stops: "served queue 0: 123
     * requests, queue 1: 45 requests; reads linked to their commit: 100, writes: 0 (commits sent
     * again: 0)".
     */
    public String servedSummary() {
        long[] served = servedRequestsPerQueue();
        StringBuilder b = new StringBuilder("served ");
        for (int q = 0; q < served.length; q++) {
            if (q > 0) b.append(", ");
            b.append("queue ").append(q).append(": ").append(served[q]).append(" requests");
        }
        if (served.length == 0) b.append("no queues");
        LinkedCounts linked = linkedIo();
        return b.append("; reads linked to their commit: ").append(linked.reads()).append(", writes: ").append(linked.writes())
                .append(" (commits sent again: ").append(linked.commitsResent()).append(')').toString();
    }

    /** {@link #linkedIo()}: reads and writes linked to their commit, and linked commits sent again after the kernel refused them. */
    public record LinkedCounts(long reads, long writes, long commitsResent) {}

    /** Whether the device speaks the ioctl-encoded opcodes (UBLK_F_CMD_IOCTL_ENCODE; 6.1 knows only the legacy ones). */
    public boolean ioctlEncoding() {
        return info != null && (info.flags() & UblkControl.F_CMD_IOCTL_ENCODE) != 0;
    }

    /** Whether the device was created unprivileged (UBLK_F_UNPRIVILEGED_DEV: this process is not root). */
    public boolean unprivileged() {
        return info != null && (info.flags() & UblkControl.F_UNPRIVILEGED_DEV) != 0;
    }

    /** Whether every queue's tag threads run on that queue's ring thread (the per-queue carrier). */
    public synchronized boolean carried() {
        if (queues.isEmpty()) return false;
        for (UblkQueue q : queues) if (!q.carried()) return false;
        return true;
    }

    /** How the kernel runs the completion work of the queues' rings (the weakest of them), or null with no queue. */
    public synchronized io.qblk.uring.TaskRun taskRun() {
        io.qblk.uring.TaskRun weakest = null;
        for (UblkQueue q : queues) {
            io.qblk.uring.TaskRun t = q.taskRun();
            if (t != null && (weakest == null || t.ordinal() < weakest.ordinal())) weakest = t;
        }
        return weakest;
    }

    /** Whether the tag buffers are registered with every queue's ring (fixed-buffer backend I/O). */
    public synchronized boolean fixedBuffers() {
        if (queues.isEmpty()) return false;
        for (UblkQueue q : queues) if (!q.fixedBuffers()) return false;
        return true;
    }

    private synchronized void closeQueues() {
        if (!queues.isEmpty()) {
            servedAtClose = new long[queues.size()];
            for (UblkQueue q : queues) servedAtClose[q.id()] = q.servedRequests();
            linkedAtClose = linkedIo();
        }
        for (UblkQueue q : queues) {
            try {
                q.join(10_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        for (UblkQueue q : queues) q.close();
        queues.clear();
        if (cdevFd >= 0) {
            LibC.close(cdevFd);
            cdevFd = -1;
        }
    }

    /** Start failed: tear down whatever exists (stop, close, delete), keeping the first error. */
    private void abandon() {
        try {
            control.stopDevice(devId);
        } catch (UblkException ignored) {
            // not started
        }
        closeQueues();
        try {
            control.deleteDevice(devId);
        } catch (UblkException ignored) {
            // already gone
        }
        control.close();
    }
}
