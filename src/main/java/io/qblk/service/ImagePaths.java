package io.qblk.service;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Inject;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The only way API requests name files: a path must lie under one of {@code qblk.images.allowed-dirs}
 * after resolving symlinks, must not contain {@code ..}, and must be a regular file (no device nodes,
 * directories or FIFOs). Relative paths are taken relative to the first allowed directory.
 */
@ApplicationScoped
public class ImagePaths {
    private static final org.jboss.logging.Logger LOG = org.jboss.logging.Logger.getLogger(ImagePaths.class);
    private final List<Path> allowed = new ArrayList<>();

    @Inject
    public ImagePaths(QblkConfig config) {
        for (String d : config.images().allowedDirs()) {
            Path p = Path.of(d).toAbsolutePath().normalize();
            try {
                Files.createDirectories(p);
                allowed.add(p.toRealPath());
            } catch (IOException e) {
                throw new UncheckedIOException("qblk.images.allowed-dirs: cannot use " + p + ": " + e.getMessage(), e);
            }
        }
    }

    public List<Path> allowedDirs() { return List.copyOf(allowed); }

    /**
     * The rule for backing files named inside images the service opens: the same as for paths given
     * to the API. The resolved file (symlinks followed) must lie under an allowed directory and be a
     * regular file; anything else is refused before it is opened.
     */
    public io.qblk.qcow2.BackingPolicy backingPolicy() {
        return (name, resolved) -> {
            Path p = resolved.toAbsolutePath().normalize();
            Path real = p;
            if (Files.exists(p)) {
                real = p.toRealPath();
                if (!Files.isRegularFile(real))
                    throw new io.qblk.qcow2.Qcow2Exception(io.qblk.qcow2.Qcow2Exception.Kind.BACKING_REFUSED, "backing file " + name + " is not a regular file (device nodes, directories and FIFOs are refused)");
            }
            Path check = real;
            if (allowed.stream().noneMatch(check::startsWith))
            {
                LOG.warnf("backing file %s resolves to %s, outside the allowed image directories %s: refused", name, real, allowed);
                throw new io.qblk.qcow2.Qcow2Exception(io.qblk.qcow2.Qcow2Exception.Kind.BACKING_REFUSED, "backing file " + name + " lies outside the allowed image directories");
            }
            return real;
        };
    }

    /** An existing image the API may open. */
    public Path existing(String raw) {
        Path p = lexical(raw);
        if (!Files.exists(p, LinkOption.NOFOLLOW_LINKS) && !Files.exists(p))
            throw ApiException.notFound(raw + ": no such file");
        Path real;
        try {
            real = p.toRealPath();
        } catch (IOException e) {
            throw ApiException.notFound(raw + ": no such file (dangling symlink?)");
        }
        requireInside(raw, real);
        if (!Files.isRegularFile(real, LinkOption.NOFOLLOW_LINKS))
            throw ApiException.badRequest(raw + ": not a regular file (device nodes, directories and FIFOs are refused)");
        return real;
    }

    /** A file the API may create: it must not exist yet and its directory must be allowed. */
    public Path creatable(String raw) {
        Path p = lexical(raw);
        if (Files.exists(p, LinkOption.NOFOLLOW_LINKS))
            throw ApiException.conflict(raw + ": already exists");
        Path parent = p.getParent();
        Path realParent;
        try {
            realParent = parent.toRealPath();
        } catch (IOException e) {
            throw ApiException.badRequest(raw + ": directory " + parent + " does not exist");
        }
        requireInside(raw, realParent.resolve(p.getFileName()));
        return realParent.resolve(p.getFileName());
    }

    /** An image path that may or may not exist yet (device definitions with create-size). */
    public Path existingOrCreatable(String raw) {
        Path p = lexical(raw);
        return Files.exists(p, LinkOption.NOFOLLOW_LINKS) ? existing(raw) : creatable(raw);
    }

    private Path lexical(String raw) {
        if (raw == null || raw.isBlank()) throw ApiException.badRequest("image path is empty");
        if (raw.indexOf('\0') >= 0) throw ApiException.badRequest("image path contains a NUL byte");
        Path p;
        try {
            p = Path.of(raw);
        } catch (InvalidPathException e) {
            throw ApiException.badRequest(raw + ": invalid path: " + e.getReason());
        }
        for (Path part : p) {
            if (part.toString().equals(".."))
                throw ApiException.forbidden(raw + ": '..' is not allowed in image paths");
        }
        if (!p.isAbsolute()) {
            if (allowed.isEmpty()) throw ApiException.forbidden(raw + ": no image directory is configured (qblk.images.allowed-dirs)");
            p = allowed.getFirst().resolve(p);
        }
        p = p.normalize();
        if (p.getFileName() == null) throw ApiException.badRequest(raw + ": names a directory, not a file");
        // Reject early when even the unresolved path is outside, so /dev/null gets a clear answer.
        if (allowed.stream().noneMatch(p::startsWith) && !symlinkedAllowedDir(p))
            throw forbidden(raw, raw + ": outside the allowed image directories", "is " + p);
        return p;
    }

    /** True when p starts with an allowed directory as configured before symlink resolution. */
    private boolean symlinkedAllowedDir(Path p) {
        try {
            Path parent = p.getParent();
            return parent != null && Files.exists(parent) && allowed.stream().anyMatch(a -> {
                try { return parent.toRealPath().startsWith(a); } catch (IOException e) { return false; }
            });
        } catch (SecurityException e) {
            return false;
        }
    }

    /**
     * A 403 whose detail names only what the client sent: where a path really leads (symlink
     * targets) and which directories are allowed are host facts for the log, not for the client.
     */
    private ApiException forbidden(String raw, String detail, String hostFact) {
        LOG.infof("refused image path %s: %s, outside the allowed image directories %s", raw, hostFact, allowed);
        return ApiException.forbidden(detail);
    }

    private void requireInside(String raw, Path real) {
        if (allowed.stream().noneMatch(real::startsWith))
            throw forbidden(raw, raw + ": resolves to a file outside the allowed image directories", "resolves to " + real);
    }
}
