package io.qblk.target;

import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Locale;

/**
 * Opens what a frontend serves: an image file as qcow2 or raw, or a null device of a given size.
 * Shared by {@code qblk export} (NBD and ublk) and the service.
 */
public final class TargetOpener {
    private TargetOpener() {}

    /** Image format; {@link #AUTO} looks at the file's first bytes (qcow2 magic, else raw). */
    public enum Format {
        AUTO, QCOW2, RAW, NULL;

        public static Format parse(String s) {
            try {
                return valueOf(s.trim().toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("unknown format '" + s + "' (expected qcow2, raw or null)");
            }
        }

        @Override
        public String toString() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /** The qcow2 header magic "QFI\xfb". */
    public static final int QCOW2_MAGIC = 0x514649fb;

    /** Opens {@code file} in {@code format}; a read-only target refuses writes. NULL needs {@link #openNull}. */
    public static BlockTarget open(Path file, Format format, boolean readOnly) throws IOException {
        if (format == Format.NULL) throw new IllegalArgumentException("the null target has no file; use a size");
        if (format == Format.AUTO) format = detect(file);
        return switch (format) {
            case RAW -> {
                PosixFileBackend f = PosixFileBackend.open(file, readOnly);
                try {
                    yield new RawTarget(f);
                } catch (IOException | RuntimeException e) {
                    f.close();
                    throw e;
                }
            }
            case QCOW2 -> openQcow2(file, readOnly);
            default -> throw new IllegalStateException(format.toString());
        };
    }

    public static BlockTarget openNull(long size) {
        return new NullTarget(size);
    }

    /** QCOW2 when the file starts with the qcow2 magic, RAW otherwise. */
    public static Format detect(Path file) throws IOException {
        try (PosixFileBackend f = PosixFileBackend.open(file, true); Arena a = Arena.ofConfined()) {
            if (f.size() < 4) return Format.RAW;
            MemorySegment m = a.allocate(4);
            f.read(0, m);
            int magic = m.get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 0);
            return magic == QCOW2_MAGIC ? Format.QCOW2 : Format.RAW;
        }
    }

    private static BlockTarget openQcow2(Path file, boolean readOnly) throws IOException {
        return new Qcow2Target(Qcow2Image.open(file, OpenOptions.defaults().withReadOnly(readOnly)));
    }
}
