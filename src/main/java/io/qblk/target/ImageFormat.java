package io.qblk.target;

import io.qblk.io.ImageLock;
import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.Qcow2Header;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * What a target serves, as qemu's block drivers name it: a qcow2 image, a raw file, or {@code null}
 * (qemu's null-co: no file, a size; reads zeroes, drops writes). The one format enum of the CLI,
 * the service and the frontends; {@link #probe} tells qcow2 from raw by {@link Qcow2Header}'s magic.
 */
public enum ImageFormat {
    QCOW2, RAW, NULL;

    /** The lower-case name used on command lines, in configuration and in JSON. */
    public String id() {
        return name().toLowerCase(Locale.ROOT);
    }

    @Override
    public String toString() {
        return id();
    }

    /** Whether this format is stored in a file (qcow2, raw), as opposed to the file-less null device. */
    public boolean hasFile() {
        return this != NULL;
    }

    /** Parses {@code qcow2}, {@code raw} or {@code null} (any case). */
    public static ImageFormat parse(String s) {
        if (s != null) {
            for (ImageFormat f : values()) if (f.id().equalsIgnoreCase(s.trim())) return f;
        }
        throw new IllegalArgumentException("unknown format '" + s + "' (expected one of " + choices() + ")");
    }

    /** {@code qcow2, raw, null}. */
    public static String choices() {
        return Arrays.stream(values()).map(ImageFormat::id).collect(Collectors.joining(", "));
    }

    /** {@code option} parsed, or the probed format of {@code file} when the option is absent or {@code auto}. */
    public static ImageFormat resolve(String option, Path file) throws IOException {
        if (option == null || option.equalsIgnoreCase("auto")) return probe(file);
        return parse(option);
    }

    /** QCOW2 when the file starts with the qcow2 magic, RAW otherwise (like qemu-img without -f). */
    public static ImageFormat probe(Path file) throws IOException {
        if (!Files.exists(file)) throw new NoSuchFileException(file.toString());
        if (Files.isDirectory(file)) throw new IOException(file + ": is a directory");
        // Reading four bytes of magic needs no consistency: force-share, so probing never conflicts with
        // a writer's lock (the open that follows takes the command's own lock and is refused there).
        return ImageLock.forceShared(() -> {
            try (PosixFileBackend f = PosixFileBackend.open(file, true)) {
                return Qcow2Header.hasMagic(f) ? QCOW2 : RAW;
            }
        });
    }
}
