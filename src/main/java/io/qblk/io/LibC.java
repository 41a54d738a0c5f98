package io.qblk.io;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

/**
 * The few libc calls the project needs, as FFM downcalls that capture errno.
 *
 * <p>Each call returns the raw result; on -1 the caller reads {@link #errno()} on the same thread
 * (the captured state lives in a per-thread segment, so no allocation per call).
 */
public final class LibC {
    public static final int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0100, O_EXCL = 0200,
            O_TRUNC = 01000, O_CLOEXEC = 02000000, O_DIRECT = 040000;
    public static final int FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2, FALLOC_FL_ZERO_RANGE = 0x10;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final SymbolLookup LIBC = LINKER.defaultLookup();
    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO =
            CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final Linker.Option CCS = Linker.Option.captureCallState("errno");

    private static final MethodHandle OPEN = down("open",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT),
            CCS, Linker.Option.firstVariadicArg(2));
    private static final MethodHandle CLOSE = down("close",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT), CCS);
    private static final MethodHandle PREAD = down("pread64",
            FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
                    ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG), CCS);
    private static final MethodHandle PWRITE = down("pwrite64",
            FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
                    ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG), CCS);
    private static final MethodHandle FDATASYNC = down("fdatasync",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT), CCS);
    private static final MethodHandle FALLOCATE = down("fallocate64",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                    ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG), CCS);
    private static final MethodHandle FTRUNCATE = down("ftruncate64",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG), CCS);
    private static final MethodHandle LSEEK = down("lseek64",
            FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG,
                    ValueLayout.JAVA_INT), CCS);

    private static final MethodHandle FCNTL = down("fcntl",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT),
            CCS, Linker.Option.firstVariadicArg(2));

    private static final MethodHandle FCNTL_PTR = down("fcntl",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS),
            CCS, Linker.Option.firstVariadicArg(2));
    private static final MethodHandle FSTAT = down("fstat",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS), CCS);

    public static final int F_GETFL = 3, F_SETFL = 4, F_DUPFD_CLOEXEC = 1030;
    /** Open file description locks (x86_64 values): test, set without waiting. */
    public static final int F_OFD_GETLK = 36, F_OFD_SETLK = 37;
    public static final short F_RDLCK = 0, F_WRLCK = 1, F_UNLCK = 2;
    /** struct flock on x86_64: l_type (short) at 0, l_whence (short) at 2, l_start at 8, l_len at 16, l_pid at 24. */
    public static final long FLOCK_SIZE = 32, FLOCK_START = 8, FLOCK_LEN = 16, FLOCK_PID = 24;
    /** struct stat on x86_64: st_dev at 0, st_ino at 8; 144 bytes. */
    public static final long STAT_SIZE = 144, STAT_DEV = 0, STAT_INO = 8;

    private static final ThreadLocal<MemorySegment> STATE =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(CAPTURE));

    private LibC() {}

    private static MethodHandle down(String name, FunctionDescriptor fd, Linker.Option... options) {
        MemorySegment sym = LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + name));
        return LINKER.downcallHandle(sym, fd, options);
    }

    /** errno of the last call made through this class on this thread. */
    public static int errno() {
        return (int) ERRNO.get(STATE.get(), 0L);
    }

    public static int open(String path, int flags, int mode) {
        try (Arena a = Arena.ofConfined()) {
            return (int) OPEN.invokeExact(STATE.get(), a.allocateFrom(path), flags, mode);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int close(int fd) {
        try {
            return (int) CLOSE.invokeExact(STATE.get(), fd);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static long pread(int fd, MemorySegment buf, long len, long off) {
        try {
            return (long) PREAD.invokeExact(STATE.get(), fd, buf, len, off);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static long pwrite(int fd, MemorySegment buf, long len, long off) {
        try {
            return (long) PWRITE.invokeExact(STATE.get(), fd, buf, len, off);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int fdatasync(int fd) {
        try {
            return (int) FDATASYNC.invokeExact(STATE.get(), fd);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int fallocate(int fd, int mode, long off, long len) {
        try {
            return (int) FALLOCATE.invokeExact(STATE.get(), fd, mode, off, len);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int ftruncate(int fd, long len) {
        try {
            return (int) FTRUNCATE.invokeExact(STATE.get(), fd, len);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** fcntl(fd, cmd, arg) for the int-argument commands (F_GETFL, F_SETFL). */
    public static int fcntl(int fd, int cmd, int arg) {
        try {
            return (int) FCNTL.invokeExact(STATE.get(), fd, cmd, arg);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** fcntl(fd, cmd, arg) for the commands taking a pointer (struct flock for the F_OFD_* locks). */
    public static int fcntl(int fd, int cmd, MemorySegment arg) {
        try {
            return (int) FCNTL_PTR.invokeExact(STATE.get(), fd, cmd, arg);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** fstat(fd, buf); {@code buf} holds {@link #STAT_SIZE} bytes. */
    public static int fstat(int fd, MemorySegment buf) {
        try {
            return (int) FSTAT.invokeExact(STATE.get(), fd, buf);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** lseek(fd, 0, SEEK_END): the file size. */
    public static long sizeOf(int fd) {
        try {
            return (long) LSEEK.invokeExact(STATE.get(), fd, 0L, 2);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static final int SEEK_DATA = 3, SEEK_HOLE = 4;

    /** lseek(fd, offset, whence), for SEEK_DATA / SEEK_HOLE; -1 with errno (ENXIO: nothing at or after offset). */
    public static long seek(int fd, long offset, int whence) {
        try {
            return (long) LSEEK.invokeExact(STATE.get(), fd, offset, whence);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new IllegalStateException(t);
    }
}
