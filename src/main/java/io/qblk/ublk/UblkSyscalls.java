package io.qblk.ublk;

import io.qblk.io.ErrnoException;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

/** The raw system calls the ublk frontend needs beyond {@link io.qblk.io.LibC}: io_uring, mmap, eventfd. */
final class UblkSyscalls {
    static final int SYS_IO_URING_SETUP = 425, SYS_IO_URING_ENTER = 426;
    static final int PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1, MAP_POPULATE = 0x8000;
    static final int EFD_CLOEXEC = 02000000;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final Linker.Option CCS = Linker.Option.captureCallState("errno");
    private static final ThreadLocal<MemorySegment> STATE = ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(CAPTURE));

    private static final MethodHandle SYSCALL6 = down("syscall", FunctionDescriptor.of(ValueLayout.JAVA_LONG,
            ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG,
            ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG), CCS, Linker.Option.firstVariadicArg(1));
    private static final MethodHandle MMAP = down("mmap", FunctionDescriptor.of(ValueLayout.ADDRESS,
            ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
            ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG), CCS);
    private static final MethodHandle MUNMAP = down("munmap", FunctionDescriptor.of(ValueLayout.JAVA_INT,
            ValueLayout.ADDRESS, ValueLayout.JAVA_LONG), CCS);
    private static final MethodHandle EVENTFD = down("eventfd", FunctionDescriptor.of(ValueLayout.JAVA_INT,
            ValueLayout.JAVA_INT, ValueLayout.JAVA_INT), CCS);
    private static final MethodHandle WRITE = down("write", FunctionDescriptor.of(ValueLayout.JAVA_LONG,
            ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG), CCS);
    private static final MethodHandle GETPID = down("getpid", FunctionDescriptor.of(ValueLayout.JAVA_INT));
    private static final MethodHandle GETEUID = down("geteuid", FunctionDescriptor.of(ValueLayout.JAVA_INT));

    private UblkSyscalls() {}

    private static MethodHandle down(String name, FunctionDescriptor fd, Linker.Option... options) {
        MemorySegment sym = LINKER.defaultLookup().find(name).orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + name));
        return LINKER.downcallHandle(sym, fd, options);
    }

    static int errno() {
        return (int) ERRNO.get(STATE.get(), 0L);
    }

    static long syscall(long nr, long a, long b, long c, long d, long e, long f) {
        try {
            return (long) SYSCALL6.invokeExact(STATE.get(), nr, a, b, c, d, e, f);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** io_uring_setup(entries, params); returns the ring fd. */
    static int ioUringSetup(int entries, MemorySegment params) throws ErrnoException {
        long r = syscall(SYS_IO_URING_SETUP, entries, params.address(), 0, 0, 0, 0);
        if (r < 0) throw new ErrnoException("io_uring_setup", errno());
        return (int) r;
    }

    /** io_uring_enter; returns the number submitted or -errno (EINTR/EAGAIN/EBUSY are the caller's to retry). */
    static int ioUringEnter(int fd, int toSubmit, int minComplete, int flags) {
        long r = syscall(SYS_IO_URING_ENTER, fd, toSubmit, minComplete, flags, 0, 0);
        return r < 0 ? -errno() : (int) r;
    }

    static MemorySegment mmap(long length, int prot, int flags, int fd, long offset, String what) throws ErrnoException {
        try {
            MemorySegment p = (MemorySegment) MMAP.invokeExact(STATE.get(), MemorySegment.NULL, length, prot, flags, fd, offset);
            if (p.address() == -1L) throw new ErrnoException("mmap " + what, errno());
            return p.reinterpret(length);
        } catch (ErrnoException e) {
            throw e;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static void munmap(MemorySegment segment) {
        try {
            int ignored = (int) MUNMAP.invokeExact(STATE.get(), segment, segment.byteSize());
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int eventfd() throws ErrnoException {
        try {
            int fd = (int) EVENTFD.invokeExact(STATE.get(), 0, EFD_CLOEXEC);
            if (fd < 0) throw new ErrnoException("eventfd", errno());
            return fd;
        } catch (ErrnoException e) {
            throw e;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Adds one to an eventfd counter (wakes a ring owner waiting for the eventfd read). */
    static void eventfdSignal(int fd, MemorySegment eight) {
        eight.set(ValueLayout.JAVA_LONG, 0, 1L);
        try {
            long ignored = (long) WRITE.invokeExact(STATE.get(), fd, eight, 8L);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int geteuid() {
        try {
            return (int) GETEUID.invokeExact();
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int getpid() {
        try {
            return (int) GETPID.invokeExact();
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
