package io.qblk.ublk;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.io.LibC;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * /dev/ublk-control: the device lifecycle commands (ADD_DEV, SET_PARAMS, START_DEV, STOP_DEV,
 * DEL_DEV, GET_DEV_INFO, START/END_USER_RECOVERY), each an IORING_OP_URING_CMD on a private
 * SQE128 ring, one at a time.
 *
 * <p>Opcodes: kernels that answer GET_FEATURES take ioctl-encoded opcodes ({@code _IOWR('u', nr,
 * struct ublksrv_ctrl_cmd)}); older ones (6.1) only the legacy plain numbers. START_DEV and
 * END_USER_RECOVERY block in the kernel until every tag has fetched, so callers issue them from a
 * thread other than the queues' owners (and on a separate {@code UblkControl}).
 */
public final class UblkControl implements AutoCloseable {
    public static final Path CONTROL_PATH = Path.of("/dev/ublk-control");

    static final int CMD_GET_DEV_INFO = 0x02, CMD_ADD_DEV = 0x04, CMD_DEL_DEV = 0x05, CMD_START_DEV = 0x06,
            CMD_STOP_DEV = 0x07, CMD_SET_PARAMS = 0x08, CMD_GET_PARAMS = 0x09,
            CMD_START_USER_RECOVERY = 0x10, CMD_END_USER_RECOVERY = 0x11, CMD_GET_DEV_INFO2 = 0x12, CMD_GET_FEATURES = 0x13;

    public static final long F_URING_CMD_COMP_IN_TASK = 1L << 1, F_NEED_GET_DATA = 1L << 2,
            F_USER_RECOVERY = 1L << 3, F_USER_RECOVERY_REISSUE = 1L << 4, F_UNPRIVILEGED_DEV = 1L << 5,
            F_CMD_IOCTL_ENCODE = 1L << 6;

    /**
     * Not root: devices are created with UBLK_F_UNPRIVILEGED_DEV (kernel ≥ 6.5, ioctl-encoded opcodes),
     * and every command on a device carries the path of its /dev/ublkcN ahead of its payload (the
     * kernel checks the caller's access to that node; GET_DEV_INFO becomes GET_DEV_INFO2).
     */
    static final boolean UNPRIVILEGED = UblkSyscalls.geteuid() != 0;

    private static final int CTRL_CMD_SIZE = 32, IO_CMD_SIZE = 16;

    private final int fd;
    private final CommandRing ring;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment buf = arena.allocate(4096, 4096);
    /** Unprivileged commands: "/dev/ublkcN" followed by the payload. */
    private final MemorySegment pathBuf = arena.allocate(4096 + 64, 8);
    private final boolean ioctlEncoding;
    private final long features;

    private UblkControl(int fd, CommandRing ring) throws UblkException {
        this.fd = fd;
        this.ring = ring;
        long f = -1;
        try {
            buf.set(ValueLayout.JAVA_LONG, 0, 0L);
            int r = command(ioc(2, CMD_GET_FEATURES, CTRL_CMD_SIZE), -1, buf.address(), 8, 0);
            if (r == 0) f = buf.get(ValueLayout.JAVA_LONG, 0);
        } catch (UblkException e) {
            // treat as legacy
        }
        this.ioctlEncoding = f >= 0;
        this.features = Math.max(f, 0);
    }

    /** Opens /dev/ublk-control, or throws {@link UblkUnavailableException} on a kernel without ublk. */
    public static UblkControl open() throws UblkException {
        if (!Files.exists(CONTROL_PATH)) {
            tryModprobe();
            if (!Files.exists(CONTROL_PATH)) throw new UblkUnavailableException();
        }
        int fd = LibC.open(CONTROL_PATH.toString(), LibC.O_RDWR | LibC.O_CLOEXEC, 0);
        if (fd < 0) {
            int e = LibC.errno();
            if (e == Errno.EACCES || e == Errno.EPERM)
                throw new UblkException(CONTROL_PATH + ": permission denied (ublk needs root, or read-write access to "
                        + CONTROL_PATH + " for unprivileged devices on Linux 6.5 or later)", e);
            if (e == Errno.ENOENT || e == Errno.ENODEV || e == Errno.ENXIO) throw new UblkUnavailableException();
            throw UblkException.fromErrno("open " + CONTROL_PATH, e);
        }
        try {
            return new UblkControl(fd, new CommandRing(4, 8));
        } catch (ErrnoException e) {
            LibC.close(fd);
            throw UblkException.fromErrno("io_uring_setup for " + CONTROL_PATH, e.errno());
        } catch (UblkException | RuntimeException e) {
            LibC.close(fd);
            throw e;
        }
    }

    /** True when this kernel has a ublk control device (possibly after loading the module). */
    public static boolean available() {
        return Files.exists(CONTROL_PATH);
    }

    private static void tryModprobe() {
        if (!Files.isDirectory(Path.of("/lib/modules"))) return;
        try {
            Process p = new ProcessBuilder("modprobe", "-q", "ublk_drv").redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            p.waitFor(5, java.util.concurrent.TimeUnit.SECONDS);
        } catch (Exception ignored) {
            // no modprobe: the caller reports the missing driver
        }
    }

    /** _IOC(dir, 'u', nr, size): dir 3 = read/write, 2 = read. */
    static int ioc(int dir, int nr, int size) {
        return (dir << 30) | (size << 16) | ('u' << 8) | nr;
    }

    private int op(int dir, int nr) {
        return ioctlEncoding ? ioc(dir, nr, CTRL_CMD_SIZE) : nr;
    }

    /** The io command opcode (FETCH_REQ 0x20, COMMIT_AND_FETCH_REQ 0x21) for a device with {@code flags}. */
    static int ioOp(int nr, long deviceFlags) {
        return (deviceFlags & F_CMD_IOCTL_ENCODE) != 0 ? ioc(3, nr, IO_CMD_SIZE) : nr;
    }

    public boolean ioctlEncoding() {
        return ioctlEncoding;
    }

    /** The driver's feature flags from GET_FEATURES (0 on kernels without it). */
    public long features() {
        return features;
    }

    private synchronized int command(int cmdOp, int devId, long addr, int len, long data0) throws UblkException {
        int nr = cmdOp & 0xff;
        if (!UNPRIVILEGED || devId < 0 || nr == CMD_ADD_DEV || nr == CMD_GET_FEATURES) return submit(cmdOp, devId, addr, len, data0, 0);
        // Unprivileged: addr = "/dev/ublkcN" + payload, dev_path_len = the path's length; the kernel
        // checks our access to that node and then hands the command the payload behind it.
        byte[] path = ("/dev/ublkc" + devId).getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        MemorySegment.copy(MemorySegment.ofArray(path), 0, pathBuf, 0, path.length);
        MemorySegment payload = len > 0 ? MemorySegment.ofAddress(addr).reinterpret(len) : null;
        if (payload != null) MemorySegment.copy(payload, 0, pathBuf, path.length, len);
        if (nr == CMD_GET_DEV_INFO) cmdOp = ioctlEncoding ? ioc(2, CMD_GET_DEV_INFO2, CTRL_CMD_SIZE) : CMD_GET_DEV_INFO2;
        int r = submit(cmdOp, devId, pathBuf.address(), path.length + len, data0, path.length);
        if (payload != null && r >= 0) MemorySegment.copy(pathBuf, path.length, payload, 0, len); // replies (GET_*)
        return r;
    }

    private int submit(int cmdOp, int devId, long addr, int len, long data0, int devPathLen) throws UblkException {
        MemorySegment sqe = ring.nextSqe();
        CommandRing.prepUringCmd(sqe, fd, cmdOp, 1);
        long c = CommandRing.SQE_CMD;
        sqe.set(ValueLayout.JAVA_INT, c, devId);
        sqe.set(ValueLayout.JAVA_SHORT, c + 4, (short) -1);
        sqe.set(ValueLayout.JAVA_SHORT, c + 6, (short) len);
        sqe.set(ValueLayout.JAVA_LONG, c + 8, addr);
        sqe.set(ValueLayout.JAVA_LONG, c + 16, data0);
        sqe.set(ValueLayout.JAVA_SHORT, c + 24, (short) devPathLen);
        sqe.set(ValueLayout.JAVA_SHORT, c + 26, (short) 0);
        sqe.set(ValueLayout.JAVA_INT, c + 28, 0);
        int[] res = {Integer.MIN_VALUE};
        try {
            while (res[0] == Integer.MIN_VALUE) {
                ring.submitAndWait(1);
                ring.reap((ud, r) -> res[0] = r);
            }
        } catch (ErrnoException e) {
            throw UblkException.fromErrno("io_uring_enter on " + CONTROL_PATH, e.errno());
        }
        return res[0];
    }

    private int check(String what, int devId, int r) throws UblkException {
        if (r < 0) {
            String dev = devId >= 0 ? " (device " + devId + ")" : "";
            if (-r == Errno.EPERM || -r == Errno.EACCES)
                throw new UblkException("ublk " + what + dev + ": permission denied (" + (UNPRIVILEGED
                        ? "not root: the device must be an unprivileged one of this user, with its /dev/ublkcN accessible"
                        : "needs root / CAP_SYS_ADMIN") + ")", -r);
            if (-r == Errno.ENODEV) throw new UblkException("ublk " + what + dev + ": no such ublk device", -r);
            throw UblkException.fromErrno("ublk " + what + dev, -r);
        }
        return r;
    }

    /** ADD_DEV: asks for a device ({@code wanted.devId()} -1 = any free id); returns what the kernel granted. */
    public synchronized UblkDeviceInfo addDevice(UblkDeviceInfo wanted) throws UblkException {
        wanted.writeTo(buf);
        check("ADD_DEV", wanted.devId(), command(op(3, CMD_ADD_DEV), wanted.devId(), buf.address(), UblkDeviceInfo.BYTES, 0));
        return UblkDeviceInfo.readFrom(buf);
    }

    public synchronized void setParams(int devId, UblkParams params) throws UblkException {
        params.writeTo(buf);
        check("SET_PARAMS", devId, command(op(3, CMD_SET_PARAMS), devId, buf.address(), UblkParams.BYTES, 0));
    }

    public synchronized UblkDeviceInfo deviceInfo(int devId) throws UblkException {
        buf.asSlice(0, UblkDeviceInfo.BYTES).fill((byte) 0);
        check("GET_DEV_INFO", devId, command(op(2, CMD_GET_DEV_INFO), devId, buf.address(), UblkDeviceInfo.BYTES, 0));
        return UblkDeviceInfo.readFrom(buf);
    }

    /** START_DEV: returns once every tag of every queue has issued FETCH_REQ and /dev/ublkbN exists. */
    public void startDevice(int devId, int serverPid) throws UblkException {
        check("START_DEV", devId, command(op(3, CMD_START_DEV), devId, 0, 0, serverPid));
    }

    public void stopDevice(int devId) throws UblkException {
        check("STOP_DEV", devId, command(op(3, CMD_STOP_DEV), devId, 0, 0, 0));
    }

    /** DEL_DEV: on 6.1 waits until /dev/ublkcN is closed by every process. */
    public void deleteDevice(int devId) throws UblkException {
        check("DEL_DEV", devId, command(op(3, CMD_DEL_DEV), devId, 0, 0, 0));
    }

    /** START_USER_RECOVERY; -EBUSY while the kernel has not yet quiesced the dead server's device. */
    public int startRecoveryRaw(int devId) {
        try {
            return command(op(3, CMD_START_USER_RECOVERY), devId, 0, 0, 0);
        } catch (UblkException e) {
            return -Errno.EIO;
        }
    }

    public void startRecovery(int devId) throws UblkException {
        check("START_USER_RECOVERY", devId, startRecoveryRaw(devId));
    }

    /** END_USER_RECOVERY: like START_DEV, returns once the new server's tags have all fetched. */
    public void endRecovery(int devId, int serverPid) throws UblkException {
        check("END_USER_RECOVERY", devId, command(op(3, CMD_END_USER_RECOVERY), devId, 0, 0, serverPid));
    }

    @Override
    public void close() {
        ring.close();
        LibC.close(fd);
        arena.close();
    }
}
