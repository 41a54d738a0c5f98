package io.qblk.cli;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Locale;

/** The two image formats the CLI knows, and probing a file for which one it is (like qemu-img without -f). */
public enum ImageFormat {
    QCOW2, RAW;

    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** qcow2 when the file starts with the magic "QFI\xfb", raw otherwise. */
    public static ImageFormat probe(Path path) throws IOException {
        if (!Files.exists(path)) throw new NoSuchFileException(path.toString());
        if (Files.isDirectory(path)) throw new IOException(path + ": is a directory");
        try (InputStream in = Files.newInputStream(path)) {
            byte[] m = in.readNBytes(4);
            if (m.length == 4 && m[0] == 'Q' && m[1] == 'F' && m[2] == 'I' && (m[3] & 0xff) == 0xfb) return QCOW2;
        }
        return RAW;
    }

    /** Parses a -f value; null means probe. */
    public static ImageFormat parse(String f) {
        if (f == null) return null;
        return switch (f.toLowerCase(Locale.ROOT)) {
            case "qcow2" -> QCOW2;
            case "raw" -> RAW;
            default -> throw new IllegalArgumentException("unknown format '" + f + "' (qcow2 or raw)");
        };
    }

    public static ImageFormat resolve(String option, Path path) throws IOException {
        ImageFormat f = parse(option);
        return f != null ? f : probe(path);
    }
}
