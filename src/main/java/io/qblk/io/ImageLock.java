package io.qblk.io;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Who may open an image file at the same time, with the lock protocol of qemu's file-posix driver,
 * so qblk and qemu's tools (qemu-img, qemu-io, qemu-nbd, a VM) exclude each other both ways.
 *
 * <p>Every open says which of qemu's four permissions it uses (consistent read, write, write
 * unchanged, resize: bits 0 to 3) and which it lets others use. On the image file it takes an open
 * file description (OFD) read lock on byte {@code 100 + bit} for each permission it uses and on byte
 * {@code 200 + bit} for each it does not share; then it tests that nobody else holds byte
 * {@code 200 + bit} of a permission it uses or byte {@code 100 + bit} of one it does not share. Locks
 * first, test second, as qemu does: of two racing opens at least one sees the other. The kernel drops
 * the locks when the descriptor is closed, also when the process dies.
 *
 * <p>An open takes one of three {@link Intent}s: read-only (uses consistent read; shares all but
 * write and resize: what qemu's read-only users of a qcow2 image refuse), read-write (uses consistent
 * read, write and resize; shares consistent read and write-unchanged, like qemu writing a qcow2
 * image), and force-share (qemu-img's {@code -U}: uses consistent read, shares everything; only
 * for read-only opens). Readers share with readers; a writer excludes writers and readers that are
 * not force-share. Raw files get the same rules (qemu itself lets raw writers share writes; qblk does not).
 *
 * <p>OFD locks also conflict between two descriptors of one process, but the message would not name
 * the holder, and one image open may use several descriptors ({@link DirectIoBackend}'s O_DIRECT and
 * buffered pair: only the first carries the lock). So every lock is also entered in a registry keyed
 * by the file's identity (st_dev, st_ino), whatever name (hard link, symbolic link, another spelling)
 * opened it; a conflicting open within the process is refused naming the holder ("device 'a'" when
 * opened under {@link #heldBy}, else "this process"), one from another process naming its pid when
 * /proc tells.
 *
 * <p>Where the file system has no OFD locks (EINVAL, ENOLCK, EOPNOTSUPP), opens go on with the
 * registry alone, as qemu's {@code locking=auto} does.
 */
public final class ImageLock {
    /** qemu's permission bits (BLK_PERM_*): consistent read, write, write unchanged, resize. */
    static final int CONSISTENT_READ = 1, WRITE = 2, WRITE_UNCHANGED = 4, RESIZE = 8, ALL = 15;
    static final int PERM_BASE = 100, SHARED_BASE = 200, BITS = 4;
    /** qemu's names of the permissions, as in its "Failed to get "write" lock" messages. */
    private static final String[] NAMES = {"consistent read", "write", "write unchanged", "resize"};
    private static final String[] VERBS = {"reading", "writing", "writing", "resizing"};

    /** What an open does with the image, as qemu's permissions (used, shared). */
    public enum Intent {
        READ(CONSISTENT_READ, ALL & ~(WRITE | RESIZE)),
        READ_WRITE(CONSISTENT_READ | WRITE | RESIZE, CONSISTENT_READ | WRITE_UNCHANGED),
        FORCE_SHARE(CONSISTENT_READ, ALL);

        final int perm, shared;

        Intent(int perm, int shared) {
            this.perm = perm;
            this.shared = shared;
        }

        String label() {
            return switch (this) {
                case READ -> "read-only";
                case READ_WRITE -> "read-write";
                case FORCE_SHARE -> "read-only, force-share";
            };
        }
    }

    /** An image's identity: the device and inode of the file, whatever name opened it. */
    public record FileId(long dev, long ino) {
        static FileId of(int fd, String name) throws IOException {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment st = a.allocate(LibC.STAT_SIZE, 8);
                if (LibC.fstat(fd, st) != 0) throw new ErrnoException("fstat " + name, LibC.errno());
                return new FileId(st.get(ValueLayout.JAVA_LONG, LibC.STAT_DEV), st.get(ValueLayout.JAVA_LONG, LibC.STAT_INO));
            }
        }

        /** "MAJ:MIN:INO" as /proc/locks and fdinfo print it (major and minor in two-digit hex). */
        String procKey() {
            long major = ((dev >>> 8) & 0xfff) | ((dev >>> 32) & ~0xfffL);
            long minor = (dev & 0xff) | ((dev >>> 12) & ~0xffL);
            return String.format("%02x:%02x:%d", major, minor, ino);
        }
    }

    /** A refused open: the image is in use in a way this open cannot share. */
    public static final class InUseException extends IOException {
        InUseException(String message) {
            super(message);
        }
    }

    private static final ScopedValue<String> HOLDER = ScopedValue.newInstance();
    private static final ScopedValue<Boolean> FORCE_SHARE = ScopedValue.newInstance();
    /** Locks of this process by image identity; guarded by the class. */
    private static final Map<FileId, List<ImageLock>> HELD = new HashMap<>();

    private final FileId id;
    private final Intent intent;
    private final String holder;
    private final String path;
    private boolean released;

    private ImageLock(FileId id, Intent intent, String holder, String path) {
        this.id = id;
        this.intent = intent;
        this.holder = holder;
        this.path = path;
    }

    /** Runs {@code op}; images it opens are named as held by {@code holder} (e.g. "device 'a'") in refusals. */
    public static <R, X extends Throwable> R heldBy(String holder, ScopedValue.CallableOp<? extends R, X> op) throws X {
        return ScopedValue.where(HOLDER, holder).call(op);
    }

    /**
     * Runs {@code op} with its read-only opens force-share (qemu-img's {@code -U}): they take no lock
     * that refuses others, so they work while another process writes the image; what they read may be
     * inconsistent. Read-write opens inside are unaffected.
     */
    public static <R, X extends Throwable> R forceShared(ScopedValue.CallableOp<? extends R, X> op) throws X {
        return ScopedValue.where(FORCE_SHARE, Boolean.TRUE).call(op);
    }

    /**
     * Opens an image file (creating it with mode 0644 when {@code create}) and locks it for
     * {@code readOnly} use; {@link Locked#close} closes the descriptor and releases the lock.
     */
    public static Locked open(Path path, boolean readOnly, boolean create, int extraFlags) throws IOException {
        int fd = openFd(path.toString(), readOnly, create, extraFlags);
        try {
            return new Locked(fd, acquire(fd, path.toString(), readOnly));
        } catch (IOException | RuntimeException e) {
            LibC.close(fd);
            throw e;
        }
    }

    /**
     * A second descriptor (e.g. O_DIRECT) of the file {@code first} has open, for the same user: it
     * takes no lock of its own (the first one's covers it) and must be closed before the first.
     */
    public static int openSibling(Locked first, Path path, boolean readOnly, int extraFlags) throws IOException {
        int fd = openFd(path.toString(), readOnly, false, extraFlags);
        try {
            if (!FileId.of(fd, path.toString()).equals(first.lock.id))
                throw new IOException(path + ": the file was replaced while it was being opened");
            return fd;
        } catch (IOException | RuntimeException e) {
            LibC.close(fd);
            throw e;
        }
    }

    private static int openFd(String path, boolean readOnly, boolean create, int extraFlags) throws IOException {
        int flags = (readOnly ? LibC.O_RDONLY : LibC.O_RDWR) | LibC.O_CLOEXEC | (create ? LibC.O_CREAT : 0) | extraFlags;
        int fd = LibC.open(path, flags, 0644);
        if (fd < 0) {
            int e = LibC.errno();
            if (e == Errno.ENOENT) throw new NoSuchFileException(path);
            throw new ErrnoException("open " + path, e);
        }
        return fd;
    }

    /** A descriptor of an image file and the lock taken through it. */
    public record Locked(int fd, ImageLock lock) {
        /** Closes the descriptor (the kernel drops its OFD locks), then leaves the registry. */
        public void close(String name) throws IOException {
            try {
                if (LibC.close(fd) != 0) throw new ErrnoException("close " + name, LibC.errno());
            } finally {
                lock.release();
            }
        }
    }

    /** Locks the image open on {@code fd} as {@code readOnly} (and the current scope) says. */
    static ImageLock acquire(int fd, String path, boolean readOnly) throws IOException {
        Intent intent = readOnly ? (FORCE_SHARE.orElse(false) ? Intent.FORCE_SHARE : Intent.READ) : Intent.READ_WRITE;
        FileId id = FileId.of(fd, path);
        String holder = HOLDER.orElse("this process");
        synchronized (ImageLock.class) {
            for (ImageLock other : HELD.getOrDefault(id, List.of())) {
                String who = other.holder + (other.path.equals(path) ? "" : " (as " + other.path + ")");
                String why = conflict(intent, other.intent.perm, other.intent.shared, who);
                if (why != null) throw new InUseException(path + ": " + why);
            }
            lockBytes(fd, id, path, intent);
            ImageLock l = new ImageLock(id, intent, holder, path);
            HELD.computeIfAbsent(id, k -> new ArrayList<>()).add(l);
            return l;
        }
    }

    /** Leaves the registry; idempotent. The OFD locks go with the descriptor. */
    void release() {
        synchronized (ImageLock.class) {
            if (released) return;
            released = true;
            List<ImageLock> l = HELD.get(id);
            if (l != null) {
                l.remove(this);
                if (l.isEmpty()) HELD.remove(id);
            }
        }
    }

    /** Why {@code mine} cannot coexist with a user holding {@code perm} and sharing {@code shared}, or null. */
    private static String conflict(Intent mine, int perm, int shared, String who) {
        int held = perm & ~mine.shared;
        if (held != 0) return inUse(bitOf(held), who);
        int refused = mine.perm & ~shared;
        if (refused != 0) return refuses(bitOf(refused), who);
        return null;
    }

    /** The most telling bit of a set: write first, then the lowest. */
    private static int bitOf(int set) {
        return (set & WRITE) != 0 ? 1 : Integer.numberOfTrailingZeros(set);
    }

    private static String inUse(int bit, String who) {
        return "image is in use for " + VERBS[bit] + " by " + who + ", which holds qemu's \"" + NAMES[bit] + "\" permission";
    }

    private static String refuses(int bit, String who) {
        return "image is open by " + who + ", which does not allow " + VERBS[bit] + " (it does not share qemu's \""
                + NAMES[bit] + "\" permission)";
    }

    /**
     * Takes qemu's lock bytes for {@code intent} on {@code fd}, then tests for other holders of
     * conflicting bytes; on a conflict drops what it took and throws {@link InUseException}.
     */
    private static void lockBytes(int fd, FileId id, String path, Intent intent) throws IOException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment fl = a.allocate(LibC.FLOCK_SIZE, 8);
            for (int b = 0; b < BITS; b++) {
                int err = 0, at = 0;
                if ((intent.perm & (1 << b)) != 0) err = setLock(fd, fl, LibC.F_RDLCK, at = PERM_BASE + b);
                if (err == 0 && (intent.shared & (1 << b)) == 0) err = setLock(fd, fl, LibC.F_RDLCK, at = SHARED_BASE + b);
                if (err == 0) continue;
                if (unsupported(err)) {
                    unlockAll(fd, fl);
                    return; // no OFD locks on this file system: the registry alone guards this process's opens
                }
                unlockAll(fd, fl);
                if (err == Errno.EAGAIN || err == Errno.EACCES)
                    throw new InUseException(path + ": image is locked exclusively by " + holderOf(id, at) + " (byte " + at + ")");
                throw new ErrnoException("lock " + path, err);
            }
            int held = 0, refused = 0;
            for (int b = 0; b < BITS; b++) {
                if ((intent.shared & (1 << b)) == 0 && heldByOther(fd, fl, PERM_BASE + b, path)) held |= 1 << b;
                if ((intent.perm & (1 << b)) != 0 && heldByOther(fd, fl, SHARED_BASE + b, path)) refused |= 1 << b;
            }
            if (held == 0 && refused == 0) return;
            unlockAll(fd, fl);
            if (held != 0) throw new InUseException(path + ": " + inUse(bitOf(held), holderOf(id, PERM_BASE + bitOf(held))));
            throw new InUseException(path + ": " + refuses(bitOf(refused), holderOf(id, SHARED_BASE + bitOf(refused))));
        }
    }

    private static boolean unsupported(int errno) {
        return errno == Errno.EINVAL || errno == Errno.ENOLCK || errno == Errno.EOPNOTSUPP || errno == Errno.ENOSYS;
    }

    private static int setLock(int fd, MemorySegment fl, short type, long start) {
        fill(fl, type, start, 1);
        return LibC.fcntl(fd, LibC.F_OFD_SETLK, fl) == 0 ? 0 : LibC.errno();
    }

    private static void unlockAll(int fd, MemorySegment fl) {
        fill(fl, LibC.F_UNLCK, PERM_BASE, SHARED_BASE + BITS - PERM_BASE);
        LibC.fcntl(fd, LibC.F_OFD_SETLK, fl);
    }

    /** F_OFD_GETLK for an exclusive lock on one byte: does another open file description hold it? */
    private static boolean heldByOther(int fd, MemorySegment fl, long start, String path) throws IOException {
        fill(fl, LibC.F_WRLCK, start, 1);
        if (LibC.fcntl(fd, LibC.F_OFD_GETLK, fl) != 0) {
            int e = LibC.errno();
            if (unsupported(e)) return false;
            throw new ErrnoException("test lock " + path, e);
        }
        return fl.get(ValueLayout.JAVA_SHORT, 0) != LibC.F_UNLCK;
    }

    private static void fill(MemorySegment fl, short type, long start, long len) {
        fl.fill((byte) 0);
        fl.set(ValueLayout.JAVA_SHORT, 0, type);
        fl.set(ValueLayout.JAVA_SHORT, 2, (short) 0); // SEEK_SET
        fl.set(ValueLayout.JAVA_LONG, LibC.FLOCK_START, start);
        fl.set(ValueLayout.JAVA_LONG, LibC.FLOCK_LEN, len);
    }

    /**
     * "another process (pid N)" for the holder of lock byte {@code b} of the image, from the lock
     * lines of /proc/PID/fdinfo (OFD locks show no pid in /proc/locks); "another process" when
     * /proc does not tell (another user's process, no /proc).
     */
    static String holderOf(FileId id, long b) {
        String key = " " + id.procKey() + " ";
        long self = ProcessHandle.current().pid();
        List<Long> pids = new ArrayList<>();
        try (DirectoryStream<Path> procs = Files.newDirectoryStream(Path.of("/proc"), p -> p.getFileName().toString().chars().allMatch(Character::isDigit))) {
            for (Path proc : procs) {
                long pid = Long.parseLong(proc.getFileName().toString());
                if (pid != self && holds(proc.resolve("fdinfo"), key, b)) pids.add(pid);
            }
        } catch (IOException | RuntimeException e) {
            // /proc unreadable: fall back to the anonymous holder
        }
        if (pids.isEmpty()) return "another process";
        return "another process (pid " + String.join(", ", pids.stream().map(String::valueOf).toList()) + ")";
    }

    private static boolean holds(Path fdinfo, String key, long b) {
        try (DirectoryStream<Path> fds = Files.newDirectoryStream(fdinfo)) {
            for (Path f : fds) {
                String text;
                try {
                    text = Files.readString(f);
                } catch (IOException | RuntimeException e) {
                    continue;
                }
                if (!text.contains(key)) continue;
                for (String line : text.split("\n")) {
                    int at = line.indexOf(key);
                    if (!line.startsWith("lock:") || at < 0) continue;
                    String[] range = line.substring(at + key.length()).trim().split("\\s+");
                    if (range.length < 2) continue;
                    long start = Long.parseLong(range[0]);
                    long end = range[1].equals("EOF") ? Long.MAX_VALUE : Long.parseLong(range[1]);
                    if (start <= b && b <= end) return true;
                }
            }
        } catch (IOException | RuntimeException e) {
            return false;
        }
        return false;
    }

    /** Whether two paths name the same file (device and inode); paths that do not exist compare by name. */
    public static boolean sameFile(Path a, Path b) {
        if (a == null || b == null) return false;
        try {
            return Files.isSameFile(a, b);
        } catch (IOException e) {
            return a.toAbsolutePath().normalize().equals(b.toAbsolutePath().normalize());
        }
    }

    @Override
    public String toString() {
        return path + " (" + intent.label() + ", " + holder + ")";
    }
}
