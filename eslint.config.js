import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // The dashboard's page scripts run in the browser.
    files: ['src/http/dashboard/**/*.js'],
    languageOptions: {
      globals: {
        window: 'readonly',
        document: 'readonly',
        location: 'readonly',
        sessionStorage: 'readonly',
        fetch: 'readonly',
        Node: 'readonly',
        TextDecoderStream: 'readonly',
      },
    },
  },
  {
    // STYLE.md habit 1: one storage boundary. Only src/store talks to the driver.
    files: ['src/**/*.ts'],
    // src/sources/mongoReader.ts: database_ingestion reads a user's database (not jobd's) with its own
    // client; the one exception, explained in that file and in docs/tabular.md.
    ignores: ['src/store/**', 'src/embedded/**', 'src/sources/mongoReader.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: [{ name: 'mongodb', message: 'Only src/store may import mongodb (STYLE.md habit 1).' }] },
      ],
    },
  },
  {
    // STYLE.md: a job type never imports the store or the worker; it gets a context and returns output.
    files: ['src/jobs/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [{ name: 'mongodb', message: 'Only src/store may import mongodb (STYLE.md habit 1).' }],
          patterns: [
            {
              regex: '^(\\.\\./)+(store|worker|sandbox|maintenance|cli|client)([/.]|$)',
              message: 'A job type never imports the store, the worker or the CLI (STYLE.md).',
            },
          ],
        },
      ],
    },
  },
  {
    // The embedded server is a separate product: it imports nothing from jobd.
    files: ['src/embedded/**/*.ts'],
    rules: {
      // Relative imports may move between src/embedded's own folders, never out to the rest of jobd.
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex:
                '^(\\.\\./)+(?!embedded/)(cli|config|errors|types|clock|index|store|worker|sandbox|maintenance|jobs|migrate|client|logging)([/.]|$)',
              message: 'src/embedded imports nothing from jobd.',
            },
          ],
        },
      ],
    },
  },
);
