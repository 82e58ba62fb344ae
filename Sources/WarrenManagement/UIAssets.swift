import Foundation

/// The web UI: static files (Sources/WarrenManagement/UI) that call the same API as any client.
/// Served without authentication, as RabbitMQ serves its UI; the API calls they make log in.
public enum UIAssets {
    static let types = ["html": "text/html; charset=utf-8", "js": "application/javascript", "css": "text/css", "svg": "image/svg+xml"]

    /// Files by URL path, read once.
    static let files: [String: (type: String, bytes: [UInt8])] = {
        var out: [String: (String, [UInt8])] = [:]
        guard let root = Bundle.module.url(forResource: "UI", withExtension: nil) else { return [:] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        for name in names {
            let ext = (name as NSString).pathExtension
            guard let type = types[ext], let data = FileManager.default.contents(atPath: root.appendingPathComponent(name).path) else {
                continue
            }
            out["/" + name] = (type, [UInt8](data))
        }
        out["/"] = out["/index.html"]
        return out
    }()

    /// The file for a path under `/`, or nil.
    public static func response(for path: String) -> ManagementResponse? {
        guard let f = files[path] else { return nil }
        return ManagementResponse(status: 200, contentType: f.type, headers: [("Cache-Control", "no-cache")], body: f.bytes)
    }
}
