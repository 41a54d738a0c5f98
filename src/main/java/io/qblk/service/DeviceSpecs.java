package io.qblk.service;

import io.qblk.io.CacheMode;
import io.qblk.target.ImageFormat;
import io.qblk.util.Sizes;
import io.qblk.service.ApiException.FieldError;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/** Checks device definitions field by field and builds {@link DeviceSpec}s; every problem is reported, not just the first. */
public final class DeviceSpecs {
    public static final String NAME_REGEX = "[a-z0-9][a-z0-9-]{0,62}";
    public static final String ADDRESS_REGEX = "(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}";
    /** Null-target devices without create-size get this size. */
    public static final long DEFAULT_NULL_SIZE = 8L << 30;
    private static final Pattern NAME = Pattern.compile(NAME_REGEX);
    private static final Pattern ADDRESS = Pattern.compile(ADDRESS_REGEX);

    private DeviceSpecs() {}

    /** Raw, unchecked fields as they come from configuration or JSON. */
    public record Draft(String name, String image, String target, String frontend, Integer queues, Integer depth,
                        Boolean readOnly, String nbdAddress, String createSize, String cache) {}

    public static final class Invalid extends Exception {
        private final List<FieldError> errors;
        Invalid(List<FieldError> errors) {
            super(String.join("\n", errors.stream().map(e -> e.field() + ": " + e.message()).toList()));
            this.errors = List.copyOf(errors);
        }
        public List<FieldError> errors() { return errors; }
    }

    /**
     * Validates {@code d}; field names in errors are {@code prefix + key} (e.g. {@code qblk.devices.db.} or empty
     * for JSON bodies). {@code imageResolver} turns the image string into a path (it may throw ApiException,
     * whose detail is reported against the image field).
     */
    public static DeviceSpec build(Draft d, String prefix, String defaultNbdAddress,
                                   java.util.function.Function<String, Path> imageResolver) throws Invalid {
        List<FieldError> errors = new ArrayList<>();
        if (d.name() == null || !NAME.matcher(d.name()).matches())
            errors.add(new FieldError(prefix.isEmpty() ? "name" : prefix.substring(0, prefix.length() - 1),
                    "device name " + (d.name() == null ? "is missing" : "'" + d.name() + "' is invalid")
                            + ": use 1-63 characters a-z, 0-9 and '-', starting with a letter or digit"));
        ImageFormat target = ImageFormat.QCOW2;
        if (d.target() != null) {
            try { target = ImageFormat.parse(d.target()); }
            catch (IllegalArgumentException e) { errors.add(new FieldError(key(prefix, "target"), e.getMessage())); }
        }
        FrontendType frontend = FrontendType.NBD;
        if (d.frontend() != null) {
            try { frontend = FrontendType.parse(d.frontend()); }
            catch (IllegalArgumentException e) { errors.add(new FieldError(key(prefix, "frontend"), e.getMessage())); }
        }
        int queues = d.queues() == null ? 1 : d.queues();
        if (queues < 1 || queues > 64) errors.add(new FieldError(key(prefix, "queues"), "must be between 1 and 64, got " + queues));
        int depth = d.depth() == null ? 128 : d.depth();
        if (depth < 1 || depth > 4096) errors.add(new FieldError(key(prefix, "depth"), "must be between 1 and 4096, got " + depth));
        String nbdAddress = d.nbdAddress() == null ? defaultNbdAddress : d.nbdAddress();
        if (d.nbdAddress() != null) {
            if (!validAddress(d.nbdAddress()))
                errors.add(new FieldError(key(prefix, "nbd-address"), "'" + d.nbdAddress() + "' must be host:port with port 0-65535 (0 = any free port)"));
            else if (frontend != FrontendType.NBD)
                errors.add(new FieldError(key(prefix, "nbd-address"), "only applies to the nbd frontend"));
        }
        long createSize = 0;
        if (d.createSize() != null) {
            try {
                createSize = Sizes.parse(d.createSize());
                if (createSize <= 0 || createSize % 512 != 0)
                    errors.add(new FieldError(key(prefix, "create-size"), "must be a positive multiple of 512 bytes, got " + d.createSize()));
            } catch (IllegalArgumentException e) {
                errors.add(new FieldError(key(prefix, "create-size"), e.getMessage()));
            }
        }
        CacheMode cache = null;
        if (d.cache() != null) {
            try { cache = CacheMode.parse(d.cache()); }
            catch (IllegalArgumentException e) { errors.add(new FieldError(key(prefix, "cache"), e.getMessage())); }
        }
        Path image = null;
        if (target == ImageFormat.NULL) {
            if (d.image() != null) errors.add(new FieldError(key(prefix, "image"), "the null target takes no image"));
            if (createSize == 0) createSize = DEFAULT_NULL_SIZE;
        } else if (d.image() == null || d.image().isBlank()) {
            errors.add(new FieldError(key(prefix, "image"), "is required for the " + target.id() + " target"));
        } else {
            try {
                image = imageResolver.apply(d.image());
            } catch (ApiException e) {
                errors.add(new FieldError(key(prefix, "image"), e.detail()));
            }
        }
        if (!errors.isEmpty()) throw new Invalid(errors);
        return new DeviceSpec(d.name(), image, target, frontend, queues, depth,
                d.readOnly() != null && d.readOnly(), nbdAddress, createSize, cache);
    }

    /** Configuration keys are kebab-case; JSON fields (empty prefix) camelCase. */
    private static String key(String prefix, String kebab) {
        if (!prefix.isEmpty()) return prefix + kebab;
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < kebab.length(); i++) {
            char c = kebab.charAt(i);
            if (c == '-' && i + 1 < kebab.length()) b.append(Character.toUpperCase(kebab.charAt(++i)));
            else b.append(c);
        }
        return b.toString();
    }

    public static boolean validAddress(String a) {
        if (a == null || !ADDRESS.matcher(a).matches()) return false;
        int port = Integer.parseInt(a.substring(a.lastIndexOf(':') + 1));
        return port >= 0 && port <= 65535;
    }

    /** Drafts for every {@code qblk.devices.<name>} entry. */
    public static List<Draft> drafts(Map<String, QblkConfig.DeviceConfig> devices) {
        List<Draft> out = new ArrayList<>();
        devices.forEach((name, c) -> out.add(new Draft(name, c.image().orElse(null), c.target(), c.frontend(),
                c.queues(), c.depth(), c.readOnly(), c.nbdAddress().orElse(null), c.createSize().orElse(null), c.cache().orElse(null))));
        return out;
    }
}
